"""A shortcut no object mask is needed for: the CAM sits on one spot whatever the image.

Nothing here knows about Lightning. Per log and split, the HiResCAMs of the probe images
(different images, different classes) are compared with each other on the CAM's own map
grid: ``cam_agreement`` is the mean Pearson correlation over pairs of images of different
classes (all pairs where the labels are unknown). What the images themselves look like is
the baseline: ``content_agreement``, the same statistic for the images' content maps (each
pixel's distance from the image's median colour, pooled to the grid and blurred by one
cell), so that objects that all sit in the centre (MNIST) agree on both and do not count
as "fixed". A CAM that sits on the same spot for every image and class while the images'
contents lie elsewhere points at a cue at a fixed place (a watermark, a corner marker, a
border): ``fixed_findings`` reports it as ``cam_shortcut`` (``splits="fixed"``, with the
``region``) when, on the training probe, ``cam_agreement >= AGREE_MIN`` and the CAMs close
at least ``AGREE_GAP`` of the gap between the images' agreement and full agreement
(``(cam - content) / (1 - content)``) for ``FIXED_PATIENCE`` logs in a row (or at one log
where the val probe's CAMs, other images, are on one spot too) and the CAMs' mass is not
in the centre ninth of the image (where centred objects' CAMs all sit). Same guards as
the other shortcut rules (``gradcam.shortcut``, ``gradcam.gates``): only while the training probe is
classified right in eval mode (``shortcut.learnt``), and not on a map coarser than
``MIN_MAP_SIDE`` cells a side (``fixed_blocker``).

Measured (8 probe images a split, HiResCAM at the auto layer, a log every 20 steps; train
probe, logs that pass the gate; cam / content agreement, gap = (cam - content) / (1 - content)):

* healthy, MNIST digits (reference model, BN CNN AdamW, GELU CNN Adam; 200 and 800 steps):
  cam at most 0.46-0.54, content 0.84, the CAMs in the centre;
* healthy, coloured shapes at random places on a bright textured backdrop (32x32, 4 classes;
  BN CNN with global pooling, plain CNN with a flatten head; 2 seeds): cam <= 0.40, content
  0.09-0.29; the same shapes centred (2 seeds): cam <= 0.79, content 0.67-0.91, in the
  centre. Largest gap of a healthy run: 0.36;
* class-coloured 5x5 patch in the top-left corner, train and val (the same shapes; the
  brightness mask covers 100% there, so the on-object rules cannot run; 2 models x 2
  seeds): cam 0.84-0.97, content 0.47-0.53, gap 0.67-0.93; found at step 40-80, 1-3 logs
  after 50% of cue-swapped images follow the cue (the CAMs lag the cue by a log: gap 0.48
  at the slowest run's second log); a class-coloured 3-pixel stripe along the bottom (BN
  CNN, 2 seeds): cam 0.99, content 0.77-0.84 (the stripe is content too), gap 0.93-0.97,
  found at step 40;
* the scoreboard's position-coded marker (the place codes the class): cam -0.03, the CAMs
  of different classes sit at different places; not this rule's (``below_area`` finds it);
* torchvision resnet18 (weights=None) on 32x32 shapes: a 2x2 map, blocked (``fixed_blocker``).

Example::

    >>> import torch
    >>> cams = torch.zeros(4, 8, 8)
    >>> cams[:, :2, :2] = torch.rand(4, 2, 2) + 1  # every CAM in the top-left corner
    >>> images = torch.zeros(4, 3, 8, 8)
    >>> for i, (r, c) in enumerate([(2, 2), (5, 5), (2, 5), (5, 2)]):
    ...     images[i, :, r : r + 2, c : c + 2] = 1.0  # objects at different places
    >>> cam, content = grid_agreements(cams, images, torch.arange(4), (8, 8))
    >>> cam > 0.5, content < 0.0, region(cams)
    (True, True, 'top-left corner')
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_cnnviz.gradcam.gates import MIN_MAP_SIDE, learnt

__all__ = [
    "AGREE_GAP",
    "AGREE_MIN",
    "FIXED_PATIENCE",
    "MIN_MAP_SIDE",
    "agreement",
    "cam_fixed",
    "content_maps",
    "fixed_blocker",
    "fixed_findings",
    "grid_agreements",
    "region",
]

# ``cam_fixed``: cam_agreement >= AGREE_MIN, and (cam - content) >= AGREE_GAP x (1 - content):
# a gap, not a margin, as a cue that is itself strong content at one place (a stripe) lifts the
# images' agreement too. FIXED_PATIENCE logs in a row (measured: the module doc).
AGREE_MIN, AGREE_GAP, FIXED_PATIENCE = 0.7, 0.5, 2
# Pairs of different classes needed to use them alone (else all pairs count).
MIN_PAIRS = 3

_ROWS, _COLUMNS = ("top", "middle", "bottom"), ("left", "centre", "right")


def content_maps(image01: Tensor) -> Tensor:
    """What each image shows where (N, H, W): each pixel's distance from its median colour.

    ``image01`` (N, C, H, W) in [0, 1]. The median colour is the background's on most
    images (a dark MNIST field, a plain or textured backdrop), so the map is bright where
    something stands out, wherever it is, without a brightness threshold.
    """
    flat = image01.float().flatten(2)
    median = flat.median(2, keepdim=True).values
    return (flat - median).abs().sum(1).view(image01.shape[0], *image01.shape[2:])


def agreement(maps: Tensor, labels: Tensor | None = None) -> Tensor:
    """Mean Pearson correlation between the maps (N, ...) of different images: a 0-d tensor.

    Over pairs of different ``labels`` when there are at least ``MIN_PAIRS`` of them, else
    over all pairs; maps that are flat (a blank CAM) are left out; ``NaN`` when fewer than
    two maps are left.

    Example::

        >>> same = torch.tensor([[1.0, 0, 0], [2.0, 0, 0], [1.0, 0, 0]])
        >>> float(agreement(same)), float(agreement(torch.eye(3)))
        (1.0, -0.5)
    """
    a = maps.flatten(1).double()
    a = a - a.mean(1, keepdim=True)
    norm = a.norm(dim=1)
    keep = norm > 1e-12 * norm.max().clamp_min(1e-300)
    a = a[keep] / norm[keep, None]
    n = a.shape[0]
    if n < 2:
        return torch.tensor(float("nan"))
    corr = a @ a.T
    pairs = torch.triu(torch.ones(n, n, dtype=torch.bool, device=a.device), 1)
    if labels is not None:
        lab = labels.to(a.device)[keep]
        different = pairs & (lab[:, None] != lab[None, :])
        pairs = different if int(different.sum()) >= MIN_PAIRS else pairs
    return corr[pairs].mean().float()


def grid_agreements(
    cams: Tensor, image01: Tensor, labels: Tensor | None, hw: tuple[int, int]
) -> tuple[float, float]:
    """``(cam_agreement, content_agreement)`` of one probe, both on the CAM's ``hw`` grid.

    ``cams`` (N, H, W) at the input's size (upsampled from ``hw``), ``image01`` (N, C, H, W)
    the de-normalised probe images. On the grid both maps are as coarse as the CAM, and the
    content is blurred by one cell (3x3 mean), so that a smooth CAM does not agree more than
    a sharp image only because it is smooth (centred squares on a 32x32 image, a CAM blob
    around each: content 0.40-0.61 -> 0.55-0.82 with the blur, the CAMs 0.85-0.89).
    """
    cam = F.adaptive_avg_pool2d(cams.float().clamp_min(0).unsqueeze(1), hw).squeeze(1)
    content = F.adaptive_avg_pool2d(content_maps(image01).unsqueeze(1), hw)
    # a CAM cell sees beyond itself (receptive field): blur the content by one cell alike
    content = F.avg_pool2d(F.pad(content, (1, 1, 1, 1), mode="replicate"), 3, 1).squeeze(1)
    return float(agreement(cam, labels)), float(agreement(content, labels))


def region(cams: Tensor) -> str:
    """Where the CAMs' mass lies (their mean, each scaled to sum 1), as words.

    The ninth of the image (3x3) that holds most of it: ``"top-left corner"``,
    ``"top edge"``, ``"centre"``, ...

    Example::

        >>> cams = torch.zeros(2, 9, 9)
        >>> cams[:, 7, 4] = 1.0
        >>> region(cams)
        'bottom edge'
    """
    flat = cams.float().clamp_min(0).flatten(1)
    mean = (flat / flat.sum(1, keepdim=True).clamp_min(1e-30)).mean(0).view(cams.shape[1:])
    ninths = F.adaptive_avg_pool2d(mean[None, None], 3).flatten()
    r, c = divmod(int(ninths.argmax()), 3)
    if (r, c) == (1, 1):
        return "centre"
    if r == 1 or c == 1:
        side = _COLUMNS[c] if r == 1 else _ROWS[r]
        return f"{side} edge"
    return f"{_ROWS[r]}-{_COLUMNS[c]} corner"


def fixed_blocker(hw: tuple[int, int] | None) -> str:
    """Why ``cam_fixed`` cannot judge this map ("": it can).

    Example::

        >>> fixed_blocker((7, 7)), fixed_blocker((2, 2))[:24]
        ('', "the CAM's 2x2 map is too")
    """
    if hw is None:
        return ("needs the HiResCAM of a map laid out like the image: the CAM layer's map "
                "is not a CNN map with the input's aspect ratio (e.g. pooled to a fixed "
                "square, or tokens)")  # fmt: skip
    if min(hw) < MIN_MAP_SIDE:  # the same bar as the on-object rules (``gates.py``)
        return (f"the CAM's {hw[0]}x{hw[1]} map is too coarse to tell one place from another "
                f"(fewer than {MIN_MAP_SIDE} cells a side)")  # fmt: skip
    return ""


def cam_fixed(
    state: dict[str, Any],
    cam: float,
    content: float,
    minimum: float = AGREE_MIN,
    gap: float = AGREE_GAP,
    patience: int = FIXED_PATIENCE,
    witness: tuple[float, float] | None = None,
) -> bool:
    """Track the train probe's agreements; ``True`` once the CAM has stayed on one spot.

    On one spot: ``cam >= minimum`` and ``cam - content >= gap * (1 - content)`` at ``patience``
    consecutive logs, or at one log where the ``witness`` (the val probe's agreements, other
    images) is on one spot too: two probes agreeing need no second log. ``state``
    (``fixed_run``) is updated in place; reports once per run of such logs.

    Example::

        >>> state = {}
        >>> [cam_fixed(state, c, 0.1) for c in (0.9, 0.3, 0.8, 0.85, 0.9)]
        [False, False, False, True, False]
        >>> cam_fixed({}, 0.9, 0.1, witness=(0.85, 0.2))
        True
    """

    def on_one_spot(cam: float, content: float) -> bool:
        known = cam == cam and content == content  # not NaN
        return known and cam >= minimum and cam - content >= gap * (1 - content)

    fixed = on_one_spot(cam, content)
    run = state.get("fixed_run", 0) + 1 if fixed else 0
    if fixed and run < patience and witness is not None and on_one_spot(*witness):
        run = patience
    state["fixed_run"] = run
    return run == patience


def fixed_findings(
    state: dict[str, Any],
    train: tuple[float, float] | None,
    val: tuple[float, float] | None = None,
    accuracy: float | None = None,
    where: str = "",
    classes: int | None = None,
    commonest: float | None = None,
) -> list[tuple[str, str, dict[str, Any]]]:
    """What one log's agreements tell: ``[(kind, message, figures)]``, as ``on_object_findings``.

    ``train`` and ``val``: ``(cam_agreement, content_agreement)`` of each split's probe;
    ``accuracy``: the training probe's (eval mode), the log is skipped as if it had not
    happened while it is too low (``shortcut.learnt``, with ``classes``: the logits' width);
    ``where``: the train CAMs' ``region``.

    Example::

        >>> state = {}
        >>> [f[2]["splits"] for a in (0.8, 0.85) for f in fixed_findings(state, (a, 0.1))]
        ['fixed']
    """
    if train is None or not learnt(accuracy, classes, commonest):
        return []
    cam, content = train
    if where == "centre":  # where centred objects' CAMs all sit: no evidence of a cue
        cam = float("nan")
    witness = val if val is not None and where != "centre" else None
    if not cam_fixed(state, cam, content, witness=witness):
        return []
    spot = f" (the {where})" if where else ""
    also = ""
    figures: dict[str, Any] = {"cam_agreement": cam, "content_agreement": content,
                               "region": where, "splits": "fixed"}  # fmt: skip
    if val is not None and val[0] == val[0]:
        figures |= {"val_cam_agreement": val[0], "val_content_agreement": val[1]}
        also = f"; on validation images {val[0]:.2f} vs {val[1]:.2f}"
    message = (
        f"Grad-CAM sits on the same place{spot} for different images and classes: their "
        f"CAMs correlate {cam:.2f} with each other, while the images' contents correlate "
        f"{content:.2f}{also}; the model reads a cue at a "
        "fixed place (a watermark, a marker, a border), not the object (a shortcut)"
    )
    return [("cam_shortcut", message, figures)]
