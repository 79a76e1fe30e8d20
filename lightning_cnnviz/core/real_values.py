"""Real figures of any tensor: complex values (MRI, radar, complex layers) as magnitudes.

Nothing here knows about Lightning. A cast of a complex tensor to a real dtype keeps the
real part and warns; a norm or a mean of that misses the rest (setups hunt 46: a complex
conv whose gradient was all imaginary logged a gradient size of 0).

Example::

    >>> import torch
    >>> real_values(torch.tensor([3 + 4j])), real_values(torch.tensor([-2.0]))
    (tensor([5.]), tensor([-2.]))
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["real_values"]


def real_values(x: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """``x`` as values of the real ``dtype``: complex ones as their magnitudes."""
    return (x.abs() if x.is_complex() else x).to(dtype)
