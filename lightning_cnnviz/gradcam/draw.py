"""The ``gradcam/{split}`` pictures: heatmaps over the images, labelled tiles in a grid.

Nothing here knows about Lightning. ``cam_grid`` draws one row of a split's image
(one layer, or one saliency method) from host copies; it runs on the sink's thread.
Colours, captions and grids come from ``core.rendering``.

Example::

    >>> import torch
    >>> image01, cam = torch.zeros(2, 1, 4, 4), torch.zeros(2, 4, 4)
    >>> cam[0, 0, 0] = 1.0  # the second CAM is all zero: drawn blank
    >>> grid, blank = cam_grid(image01, cam, torch.tensor([[0.0, 1.0], [1.0, 0.0]]), None)
    >>> grid.dtype, grid.shape[0], blank
    (torch.uint8, 3, 1)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_cnnviz.core import rendering as R
from lightning_cnnviz.core.labels import caption, columns_that_fit
from lightning_cnnviz.core.logits import as_logits

__all__ = ["MAX_TILES", "blank_cams", "cam_grid"]

_RIGHT, _WRONG = (120, 230, 120), (255, 90, 90)  # caption colours: prediction right / wrong


def blank_cams(cam: Tensor) -> Tensor:
    """Per map of ``(N, H, W)``, whether it is all zero or not finite (drawn blank).

    Example::

        >>> blank_cams(torch.tensor([[[0.0, 1.0]], [[0.0, 0.0]], [[float("nan"), 1.0]]])).tolist()
        [False, True, True]
    """
    flat = cam.flatten(1)
    return (~torch.isfinite(flat).all(1)) | (flat.nan_to_num().amax(1) <= 0)


MAX_TILES = 32  # tiles a grid draws (the figures read every probe image)


def cam_grid(
    image01: Tensor,
    cam: Tensor,
    logits: Tensor,
    labels: Tensor | None,
    *,
    cmap: str = "inferno",
    alpha: float = 0.5,
    shared_scale: bool = False,
    min_size: int = 84,
    max_size: int = 160,
) -> tuple[Tensor, int]:
    """Heatmaps over the images, each tile labelled ``true 7 / pred 1 0.83``, in a grid.

    As many tiles a row as keep the labels legible when TensorBoard scales the
    picture to its card width (``labels.columns_that_fit``).

    Labels are green where the prediction is right, red where it is wrong; a model of one
    output (a regression) shows that output, ``out 2.31``. Tiles
    are upscaled (nearest) to at least ``min_size`` and shrunk to at most ``max_size``.

    Returns:
        ``(uint8 (3, H, W) grid, number of all-zero or non-finite CAMs)`` (those show blank).
    """
    bad = blank_cams(cam)
    heat = R.normalize(cam, "shared" if shared_scale else "per_image")
    tiles = R.upscale_to(R.overlay(image01, heat, cmap, alpha), min_size)
    if max(tiles.shape[-2:]) > max_size:
        scale = max_size / max(tiles.shape[-2:])
        size = (round(tiles.shape[-2] * scale), round(tiles.shape[-1] * scale))
        tiles = F.interpolate(tiles.float(), size=size, mode="area").round().byte()
    single = logits.shape[1] == 1  # one output (a regression, a binary logit): no softmax
    conf, pred = as_logits(logits).softmax(1).max(1)  # a softmax model's own probabilities
    conf = logits[:, 0].float() if single else conf
    host = torch.stack([conf, pred.float(), bad.float()]).cpu().tolist()
    out = []
    for i, tile in enumerate(tiles.cpu()):
        p, c, y = int(host[1][i]), host[0][i], None if labels is None else int(labels[i])
        said = f"out {c:.3g}" if single else f"pred {p} {c:.2f}"
        text = said if y is None else f"true {y} / {said}"
        out.append(caption(tile, text, _RIGHT if single or y in (None, p) else _WRONG))
    # as many tiles a row as keep the captions legible in a TensorBoard card
    columns = columns_that_fit(max(t.shape[-1] for t in out) + 2, len(out))
    return R.grid(out, nrow=columns, padding=2), int(sum(host[2]))
