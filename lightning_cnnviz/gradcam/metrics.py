"""What a CAM says in numbers: concentration, on-object share and drift, per image.

Nothing here knows about Lightning. Metrics, per image (``NaN`` where
undefined; ``means_to_host`` averages them):

* ``concentration``: share of the CAM's mass in its top 10% of pixels
  (0.1 for a flat map, 1.0 when all mass is in a tenth of the image);
* ``on_object``: share of the CAM's mass inside the foreground mask: input
  pixels brighter than a threshold after de-normalisation, in connected
  components (8-neighbourhood) of at least a quarter of the largest one's area,
  so that a small isolated bright blob (a watermark, a planted marker, noise)
  does not count as the object;
* ``drift``: ``1 - Pearson correlation`` with the same image's CAM at the
  previous log (0 = unchanged, 1 = unrelated, 2 = inverted).

Example::

    >>> import torch
    >>> flat, eye = torch.ones(1, 10, 10), torch.eye(10)[None]
    >>> round(float(concentration(flat)), 6), round(float(drift(flat + eye, 2 * eye)), 6)
    (0.1, 0.0)
    >>> image = torch.zeros(1, 1, 10, 10)
    >>> image[0, 0, :2] = 0.9  # the object: the two top rows
    >>> metrics = cam_metrics(flat, foreground(image, 0.2), None)
    >>> {name: round(float(value), 6) for name, value in metrics.items()}
    {'concentration': 0.1, 'on_object': 0.2}
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "TOP_SHARE",
    "cam_metrics",
    "components",
    "concentration",
    "drift",
    "foreground",
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


def components(mask: Tensor) -> Tensor:
    """Connected components (8-neighbourhood) of a boolean mask (N, H, W).

    Every pixel of the mask gets the label of its component (the largest
    ``1 + flat index`` in it); pixels off the mask get 0. Vectorised: labels
    spread by a 3x3 max-pool restricted to the mask until nothing changes (as
    many rounds as the longest path inside a component; one host check every 8).

    Example::

        >>> mask = torch.tensor([[[1, 1, 0, 0], [0, 0, 0, 1], [0, 0, 0, 1]]]).bool()
        >>> components(mask).tolist()
        [[[2, 2, 0, 0], [0, 0, 0, 12], [0, 0, 0, 12]]]
    """
    h, w = mask.shape[-2:]
    keep = mask.float()
    ids = torch.arange(1, h * w + 1, device=mask.device, dtype=torch.float32).view(1, h, w)
    labels = ids * keep
    for i in range(h * w):
        grown = F.max_pool2d(labels.unsqueeze(1), 3, stride=1, padding=1).squeeze(1) * keep
        if i % 8 == 7 and torch.equal(grown, labels):
            break
        labels = grown
    return labels.long()


def foreground(
    image01: Tensor, threshold: float, min_component: float = 0.25, max_side: int = 64
) -> Tensor:
    """Foreground mask (N, H, W): the object's bright pixels.

    Pixels whose channel-mean brightness is above ``threshold``, in connected
    components (8-neighbourhood) of at least ``min_component`` x the largest
    component's area: the object is the big bright shape; small isolated blobs
    (a watermark, a planted marker, noise specks) are not. ``min_component=0``
    keeps every bright pixel. Images larger than ``max_side`` find their components
    on a grid of ``ceil(side / max_side)``-pixel cells (a cell is bright when any of
    its pixels is), so the cost stays that of a 64x64 image; blobs closer than a
    cell then count as one.

    ``image01`` is the de-normalised input (N, C, H, W), values in [0, 1].

    Example::

        >>> image = torch.zeros(1, 1, 6, 6)
        >>> image[0, 0, 1:5, 2:4] = 1.0  # the object: 8 pixels
        >>> image[0, 0, 0, 5] = 1.0  # an isolated speck
        >>> int(foreground(image, 0.2).sum()), int(foreground(image, 0.2, 0.0).sum())
        (8, 9)
    """
    mask = image01.float().mean(1) > threshold
    if min_component <= 0:
        return mask
    h, w = mask.shape[-2:]
    cell = max(1, math.ceil(max(h, w) / max_side))
    coarse = mask
    if cell > 1:
        coarse = F.max_pool2d(mask.float().unsqueeze(1), cell, ceil_mode=True).squeeze(1) > 0
    labels = components(coarse).flatten(1)
    sizes = torch.zeros(labels.shape[0], labels.shape[1] + 1, device=labels.device)
    sizes.scatter_add_(1, labels, torch.ones_like(labels, dtype=sizes.dtype))
    sizes[:, 0] = 0  # background
    size = sizes.gather(1, labels)  # the area of each cell's component
    big = (size >= min_component * sizes.amax(1, keepdim=True)).view_as(coarse)
    if cell > 1:
        big = big.repeat_interleave(cell, 1).repeat_interleave(cell, 2)[:, :h, :w]
    return big & mask


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

    ``concentration``; ``on_object`` when a foreground ``mask`` (``foreground``) is
    given; ``drift`` when a ``previous`` CAM of the same shape is given.
    """
    out = {"concentration": concentration(cam)}
    if mask is not None:
        out["on_object"] = on_object(cam, mask)
    if previous is not None and previous.shape == cam.shape:
        out["drift"] = drift(cam, previous.float())
    return out


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
    host = torch.stack(means).tolist()
    return {k: v for k, v in zip(values, host, strict=True) if math.isfinite(v)}
