"""Real figures of any tensor: complex values (MRI, radar, complex layers) as magnitudes.

Nothing here knows about Lightning. A cast of a complex tensor to a real dtype keeps the
real part and warns; a norm or a mean of that misses the rest (setups hunt 46: a complex
conv whose gradient was all imaginary logged a gradient size of 0). Sparse gradients are
read by their stored values.

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
    """``x`` as values of the real ``dtype``: complex ones as their magnitudes.

    A sparse ``x`` (an ``nn.Embedding(sparse=True)``'s gradient) as its stored values:
    most reductions have no sparse kernel (setups hunt 36: ``amax`` aborted a fit).

    Example::

        >>> sparse = torch.sparse_coo_tensor([[1]], [2.0], (4,), check_invariants=True)
        >>> real_values(sparse)
        tensor([2.])
    """
    if x.layout != torch.strided:
        x = x.coalesce().values() if x.is_sparse else x.to_dense()
    return (x.abs() if x.is_complex() else x).to(dtype)
