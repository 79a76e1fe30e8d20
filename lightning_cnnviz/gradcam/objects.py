"""Where the object is in a probe image, and the image without it.

Nothing here knows about Lightning. ``foreground`` finds the object's pixels: input
pixels that stand out above the background (the image border's level) after
de-normalisation, in connected components (8-neighbourhood) of at least a quarter of the
largest one's area and not far brighter than it, so that a small bright blob (a
watermark, a planted marker, noise) does not count as the object. ``without_object``
fills them with the image's own background pixels, for the check that a model reads the
object.

Example::

    >>> import torch
    >>> image = torch.zeros(1, 1, 10, 10)
    >>> image[0, 0, 3:7, 3:7] = 0.9
    >>> int(foreground(image, 0.2).sum())
    16
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["components", "foreground", "levels", "without_object"]

# ``foreground``: the image's bright level is its 99th percentile (a few hot pixels do not set it);
TOP_QUANTILE = 0.99
# an object pixel stands 4 robust standard deviations above the background's noise (min-max
# scaled shapes on uniform noise: without it, up to 23% of an image's noise passed; at 3, 70%
# of the images of shapes on a bright noisy backdrop kept specks; at 4, 3 of 600 dim shapes
# went unfound);
NOISE_STDS, MAD_TO_STD = 4.0, 1.4826
# a blob smaller than the object and 1.5x its contrast is a marker: a 4x4 patch at level 3 beside
# coloured shapes (levels up to 2.3) was half "object" when it was at least a quarter their size.
OUTLIER = 1.5


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


def levels(bright: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per image (N,) of a brightness map (N, H, W): background level, its spread, bright level.

    The background is read on the image's border (where an object seldom lies; a corner
    patch barely moves its median): its median and its robust standard deviation
    (``1.4826 x`` the median absolute deviation; 0 on a flat background). The bright level
    is the ``TOP_QUANTILE`` quantile of the whole image, so that a few extreme pixels do
    not set it.

    Example::

        >>> bright = torch.zeros(1, 10, 10)
        >>> bright[0, 3:7, 3:7] = 0.8
        >>> [round(float(v), 6) for v in levels(bright)]
        [0.0, 0.0, 0.8]
    """
    border = _border(bright)
    background = border.median(1).values
    spread = MAD_TO_STD * (border - background[:, None]).abs().median(1).values
    flat = bright.flatten(1)
    top = flat.kthvalue(max(1, math.ceil(TOP_QUANTILE * flat.shape[1])), dim=1).values
    return background, spread, top


def foreground(
    image01: Tensor, threshold: float, min_component: float = 0.25, max_side: int = 64
) -> Tensor:
    """Foreground mask (N, H, W): the object's bright pixels.

    A pixel is bright when its brightness (the largest of its channels: a saturated colour
    is bright in its own) stands above the image's background
    level (``levels``: the border's median) by more than ``threshold`` x the way up to the
    image's bright level, and by more than ``NOISE_STDS`` robust standard deviations of the
    background (its noise). Measured from the background, not from black: images rescaled
    each to its own range (no normalisation stats known) move with their brightest and
    darkest pixels, and on a noisy background every speck would pass a fixed level. On
    black backgrounds (digits) it is the plain ``brightness > threshold`` of a [0, 1] image.

    Kept: connected components (8-neighbourhood) of at least ``min_component`` x the
    largest one's area, unless smaller than it and ``OUTLIER`` x brighter (mean contrast):
    the object is the big bright shape; small isolated blobs (a watermark, a planted
    marker, noise specks) and small blobs much brighter than it (a burnt-in patch) are not.
    An image where nothing stands out (a dark object on a bright backdrop, a blank image)
    is all object: its CAM is on the object, and a probe of such images covers most of the
    image, which the shortcut rules take as no object to tell from the rest.
    ``min_component=0`` keeps every bright pixel. Images larger than ``max_side`` find
    their components on a grid of ``ceil(side / max_side)``-pixel cells (a cell is bright
    when any of its pixels is), so the cost stays that of a 64x64 image; blobs closer than
    a cell then count as one.

    ``image01`` is the de-normalised input (N, C, H, W), values in [0, 1].

    Example::

        >>> image = torch.zeros(1, 1, 8, 8)
        >>> image[0, 0, 2:6, 3:5] = 0.5  # the object: 8 pixels
        >>> image[0, 0, 0, 7] = 0.5  # an isolated speck
        >>> image[0, 0, 6:8, 0:2] = 1.0  # a 4-pixel patch twice as bright: a marker
        >>> int(foreground(image, 0.2).sum()), int(foreground(image, 0.2, 0.0).sum())
        (8, 13)
    """
    bright = image01.float().amax(1)  # a saturated colour is bright in its own channel
    background, spread, top = levels(bright)
    level = torch.maximum(threshold * (top - background), NOISE_STDS * spread).clamp_min(0)
    contrast = bright - background[:, None, None]
    mask = contrast > level[:, None, None]
    if min_component <= 0:
        return _whole_if_empty(mask)
    h, w = mask.shape[-2:]
    cell = max(1, math.ceil(max(h, w) / max_side))
    coarse, value = mask, contrast * mask
    if cell > 1:
        pool = F.avg_pool2d(mask.float().unsqueeze(1), cell, ceil_mode=True).squeeze(1)
        total = F.avg_pool2d(value.unsqueeze(1), cell, ceil_mode=True).squeeze(1)
        coarse, value = pool > 0, total / pool.clamp_min(1e-12)  # the cell's bright pixels' mean
    labels = components(coarse).flatten(1)
    sizes = torch.zeros(
        labels.shape[0], labels.shape[1] + 1, device=labels.device, dtype=torch.float32
    )
    sums = torch.zeros_like(sizes).scatter_add_(1, labels, value.flatten(1).float())
    sizes.scatter_add_(1, labels, torch.ones_like(labels, dtype=sizes.dtype))
    sizes[:, 0] = 0  # background
    size, largest = sizes.gather(1, labels), sizes.amax(1, keepdim=True)  # each cell's blob's area
    mean = sums / sizes.clamp_min(1)  # each blob's mean contrast
    reference = mean.gather(1, sizes.argmax(1, keepdim=True))  # the largest blob's
    marker = (mean.gather(1, labels) > OUTLIER * reference) & (size < largest)
    big = ((size >= min_component * largest) & ~marker).view_as(coarse)
    if cell > 1:
        big = big.repeat_interleave(cell, 1).repeat_interleave(cell, 2)[:, :h, :w]
    return _whole_if_empty(big & mask)


def without_object(x: Tensor, mask: Tensor, grow: int = 1) -> Tensor:
    """``x`` (N, C, H, W) with the object (``mask`` (N, H, W), grown by ``grow`` pixels) removed.

    Each of its pixels takes one of the image's own background pixels within ``RING``
    pixels of the grown object (anywhere outside it where there are none), drawn by a
    generator of its own (the same fill every time, the global random state untouched);
    the border's median where the object fills the image. Not one flat value: on a noisy
    background a flat patch marks where the object was, and a model reading that place kept
    53% of its class while it scored 22% with the object's place filled by background and
    21% on images without an object (setups hunt 61: "reads the class from outside the
    object" on a healthy run). Not the border's pixels alone: a frame drawn round every
    image set the fill to its colour and left the object's outline in it (hunt 30), nor
    pixels drawn from the whole background: the frame's would dot the object's place. A
    model that reads the object loses its class on such an image; one that reads a cue
    elsewhere keeps it.

    Example::

        >>> x = torch.zeros(1, 1, 10, 10)
        >>> x[0, 0, 4:6, 4:6] = 5.0
        >>> without_object(x, x[:, 0] > 1, grow=0).abs().sum().item()
        0.0
        >>> x[0, 0, 0] = x[0, 0, -1] = 9.0  # a bright frame's two rows: the fill stays dark
        >>> without_object(x, x[:, 0] == 5, grow=0)[0, 0, 4:6, 4:6].tolist()
        [[0.0, 0.0], [0.0, 0.0]]
    """
    grown = _grown(mask[:, None].float(), grow)
    ring = (_grown(grown.float(), RING) & ~grown).flatten(1).cpu()
    inside = grown.flatten(1).cpu()  # (N, H*W)
    flat = x.flatten(2)
    out = flat.clone()
    draw = torch.Generator().manual_seed(0)
    for n, where in enumerate(inside):
        holes = where.nonzero()[:, 0]
        ground = (ring[n] if ring[n].any() else ~where).nonzero()[:, 0]
        if not len(holes):
            continue
        if not len(ground):  # all object: the border's median
            fill = _border(x[n].float()).median(-1).values.to(x.dtype)
            out[n][:, holes.to(x.device)] = fill[:, None]
            continue
        picked = ground[torch.randint(len(ground), (len(holes),), generator=draw)]
        out[n][:, holes.to(x.device)] = flat[n][:, picked.to(x.device)]
    return out.view_as(x)


RING = 3  # the fill is drawn from the background within this many pixels of the object


def _grown(mask: Tensor, by: int) -> Tensor:
    """``mask`` (N, 1, H, W) grown by ``by`` pixels (8-neighbourhood), as booleans."""
    return F.max_pool2d(mask, 2 * by + 1, stride=1, padding=by) > 0


def _border(t: Tensor) -> Tensor:
    """The border pixels of ``t``'s last two (spatial) dims, flattened into its last dim."""
    return torch.cat([t[..., 0, :], t[..., -1, :], t[..., 1:-1, 0], t[..., 1:-1, -1]], dim=-1)


def _whole_if_empty(mask: Tensor) -> Tensor:
    """Images with no object found (an empty mask) count as all object: no CAM is off it."""
    return mask | ~mask.flatten(1).any(1)[:, None, None]
