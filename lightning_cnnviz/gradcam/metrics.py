"""What a CAM says in numbers: concentration, on-object share and drift, per image.

Nothing here knows about Lightning. Metrics, per image (``NaN`` where
undefined; ``means_to_host`` averages them):

* ``concentration``: share of the CAM's mass in its top 10% of pixels
  (0.1 for a flat map, 1.0 when all mass is in a tenth of the image);
* ``on_object``: share of the CAM's mass inside the foreground mask (``objects.py``:
  where the object is);
* ``drift``: ``1 - Pearson correlation`` with the same image's CAM at the
  previous log (0 = unchanged, 1 = unrelated, 2 = inverted).

Example::

    >>> import torch
    >>> flat, eye = torch.ones(1, 10, 10), torch.eye(10)[None]
    >>> round(float(concentration(flat)), 6), round(float(drift(flat + eye, 2 * eye)), 6)
    (0.1, 0.0)
    >>> from lightning_cnnviz.gradcam.objects import foreground
    >>> image = torch.zeros(1, 1, 10, 10)
    >>> image[0, 0, :2] = 0.9  # the object: the two top rows
    >>> metrics = cam_metrics(flat, foreground(image, 0.2), None)
    >>> {name: round(float(value), 6) for name, value in metrics.items()}
    {'concentration': 0.1, 'on_object': 0.2, 'object_share': 0.2}
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "KEPT_SIDE",
    "TOP_SHARE",
    "cam_metrics",
    "concentration",
    "drift",
    "kept_size",
    "means_to_host",
    "on_object",
]

TOP_SHARE = 0.1  # ``concentration``: the top 10% of pixels


def concentration(cam: Tensor, top: float = TOP_SHARE) -> Tensor:
    """Per image: share of the CAM's mass in its top ``top`` share of pixels (N,)."""
    flat = cam.flatten(1).clamp_min(0)
    k = max(1, math.ceil(top * flat.shape[1]))
    total = flat.sum(1)
    share = flat.topk(k, dim=1).values.sum(1) / total
    return torch.where(total > 0, share, torch.full_like(share, math.nan))


def on_object(cam: Tensor, mask: Tensor) -> Tensor:
    """Per image: share of the CAM's mass inside ``mask`` (N,); ``NaN`` for an all-zero CAM."""
    flat = cam.flatten(1).clamp_min(0)
    total = flat.sum(1)
    share = (flat * mask.flatten(1).to(flat.dtype)).sum(1) / total
    return torch.where(total > 0, share, torch.full_like(share, math.nan))


def drift(cam: Tensor, previous: Tensor) -> Tensor:
    """Per image: ``1 - Pearson correlation`` with ``previous`` (N,); ``NaN`` where one is flat."""
    a = cam.flatten(1).double()
    b = previous.to(cam.device).flatten(1).double()
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    norm = a.norm(dim=1) * b.norm(dim=1)
    corr = (a * b).sum(1) / norm
    out = torch.where(norm > 0, 1.0 - corr, torch.full_like(corr, math.nan))
    return out.float()


def cam_metrics(cam: Tensor, mask: Tensor | None, previous: Tensor | None) -> dict[str, Tensor]:
    """Per-image CAM metrics (N,) by name.

    ``concentration``; ``on_object`` and ``object_share`` (the object's share of the
    image area: what ``on_object`` of a CAM spread evenly would be) when a foreground
    ``mask`` (``foreground``) is given; ``drift`` when a ``previous`` CAM of the same
    shape is given.
    """
    out = {"concentration": concentration(cam)}
    if mask is not None:
        out["on_object"] = on_object(cam, mask)
        out["object_share"] = mask.flatten(1).float().mean(1)
    if previous is not None and previous.shape[0] == cam.shape[0]:
        now = kept_size(cam)  # the previous CAM is kept at that size (a checkpoint holds it)
        if previous.shape == now.shape:
            out["drift"] = drift(now, previous.float())
    return out


KEPT_SIDE = 32  # a CAM kept for the next event's drift: at most this many pixels a side


def kept_size(cam: Tensor) -> Tensor:
    """``cam`` (N, *spatial) averaged down to at most ``KEPT_SIDE`` a side (as it is if smaller).

    A CAM is a coarse map upsampled to the input (a 4x4 map at 512x512): kept whole in every
    checkpoint it took 8.4 MB, and its drift reads the same at this size.

    Example::

        >>> kept_size(torch.ones(2, 512, 512)).shape, kept_size(torch.ones(2, 28, 28)).shape
        (torch.Size([2, 32, 32]), torch.Size([2, 28, 28]))
    """
    spatial = cam.shape[1:]
    if max(spatial, default=0) <= KEPT_SIDE or len(spatial) not in (1, 2, 3):
        return cam
    size = tuple(min(s, KEPT_SIDE) for s in spatial)
    pool = (F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d)[len(spatial) - 1]
    return pool(cam.unsqueeze(1).float(), size)[:, 0]


def means_to_host(values: Mapping[str, Tensor]) -> dict[str, float]:
    """Mean of each tensor's finite entries, moved to the host in one transfer.

    Entries with no finite value at all are left out (nothing to plot).

    Example::

        >>> means_to_host({"a": torch.tensor([0.2, float("nan"), 0.4]), "b": torch.tensor([])})
        {'a': 0.30000001192092896}
    """
    if not values:
        return {}
    means = []
    for value in values.values():
        finite = torch.isfinite(value)
        total = torch.where(finite, value, torch.zeros_like(value)).sum()
        means.append(total.float() / finite.sum())  # 0 / 0 = NaN when none is finite
    # a figure made on the host (a float) may sit beside maps on the model's device
    device = next((m.device for m in means if m.device.type != "cpu"), means[0].device)
    host = torch.stack([m.to(device) for m in means]).tolist()
    return {k: v for k, v in zip(values, host, strict=True) if math.isfinite(v)}
