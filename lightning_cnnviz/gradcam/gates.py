"""When the shortcut rules may judge a log: a probe the model gets right, a map fine enough.

Every Grad-CAM shortcut rule (``gradcam.shortcut``, ``gradcam.fixed_spot``) reads the
position-preserving map (HiResCAM: a cue a flatten + linear head reads by its position
stays invisible to plain Grad-CAM, which averages each channel's gradient over the
image), and judges a log only where that map can say something:

* ``learnt``: the model classifies its training probe images right in eval mode
  (``MIN_PROBE_ACC``, ``OVER_CHANCE`` x chance). A shortcut is a way of being right, and
  the CAM of a model that is wrong on its own training images in eval mode (lagging
  BatchNorm statistics, an untrained start) says nothing about what it reads. Measured
  (MNIST digits, 8 probe images, HiResCAM at the last conv block): 1.6-2.1x the area
  share on healthy runs (reference model, BN CNN, GELU CNN) once the probe accuracy is
  0.5 or more; the BatchNorm-lagging ResNet's 0.75x came with 2 of 8 probe images right;
* ``area_blocker``: an object that leaves most of the image to the rest, on a map with
  enough cells to place it;
* ``needs_object``: a model that loses its class once the object is replaced by the
  background reads the object, whatever its CAM says;
* ``val_lags``: the val probe's accuracy stays under halfway from chance to the training
  probe's: a cue the model reads on both splits' images is one validation images lack.

Example::

    >>> learnt(0.25, 10), area_blocker((0.15, 0.14), 7.0), needs_object(0.12, 10)
    (False, '', True)
"""

from __future__ import annotations

__all__ = [
    "BOTH_MAX_OBJECT_SHARE",
    "KEPT_SHARE",
    "MAX_OBJECT_SHARE",
    "MIN_MAP_SIDE",
    "MIN_OBJECT_CELLS",
    "MIN_PROBE_ACC",
    "OVER_CHANCE",
    "area_blocker",
    "learnt",
    "needs_object",
    "val_lags",
]

# No finding while fewer than half the training probe images are classified right (eval mode),
# nor below 1.5x chance: a model answering one class for every image is right on 1/K of a
# class-balanced probe, which for two classes is the half itself (a healthy 1-vs-7 digit
# net on 80/20 data, answering "1" to all at its first logs, had every CAM on one spot)
MIN_PROBE_ACC, OVER_CHANCE = 0.5, 1.5
# A map with fewer cells a side has no places to tell apart: the object and the rest share
# its cells (resnet18's 2x2 map of a 32x32 or 64x64 image). No on-object or fixed-spot rule
# runs there: a healthy timm resnet18 on 32x32 shapes read 0.33 on the object on training
# images vs 0.47 on validation ones, the probes' objects covering 39% and 46%.
MIN_MAP_SIDE = 4
# The both-splits rule also needs the object on at least this many cells of the map: on
# fewer every CAM sits at the area share.
MIN_OBJECT_CELLS = 4.0
# ...and an object that leaves most of the image to the rest: where the foreground mask covers
# more (inputs shifted bright, a bright background), every CAM is "on the object".
MAX_OBJECT_SHARE = 0.5
# The both-splits rule also needs an object of at most a third of the image: on coloured
# shapes covering 39% healthy CAMs sit at only 1.2-1.4x the share (a plain CNN with mixup,
# cutmix or heavy augmentation) and a LayerNorm/GELU ConvNeXt's at 1.05-1.25x, in the
# range of a cue (0.8-1.13x on digits covering 13-18%): the ratio tells nothing there.
# (That 39% was a foreground mask that took in the shapes' noisy backdrop; measured from the
# background it is their 7-9%, where healthy runs read 2.3-4.3x and a corner cue 0.55-1.16x.)
BOTH_MAX_OBJECT_SHARE = 1 / 3
# The both-splits rule waits while the model needs the object: with it replaced by the
# background, fewer than halfway from chance to all of the training probe stay right. A
# cue on both splits kept 88-100% (digits with a label-coding marker, from step 6); a
# healthy 100-class net on two-digit images, whose CAM sat at 1.0x the area share, kept
# none (see docs/gradcam.md)
KEPT_SHARE = 0.5


def area_blocker(
    areas: tuple[float | None, ...],
    cells: float | None = None,
    hw: tuple[int, int] | None = None,
    both: bool = False,
) -> str:
    """Why a rule cannot compare ``on_object`` with the area share ("": it can).

    ``areas``: the train and val ``object_share``; ``cells``: how many cells of the CAM's
    map the object covers (``None``: unknown); ``hw``: the map's size (``None``:
    unknown; fewer than ``MIN_MAP_SIDE`` cells a side blocks every rule); ``both``: for
    the both-splits rule (``BOTH_MAX_OBJECT_SHARE``, ``MIN_OBJECT_CELLS``).

    Example::

        >>> area_blocker((0.15, 0.14), 7.0), area_blocker((1.0, 1.0))[:32]
        ('', 'the foreground mask covers 100% ')
        >>> area_blocker((0.39, 0.46)), area_blocker((0.39, 0.46), 6.2, both=True)[:24]
        ('', 'the object covers 46% of')
    """
    known = [a for a in areas if a is not None]
    if known and max(known) > MAX_OBJECT_SHARE:
        return (f"the foreground mask covers {max(known):.0%} of the image (more than "
                f"{MAX_OBJECT_SHARE:.0%}): no object to tell from the rest; "
                "see `foreground_threshold`")  # fmt: skip
    size = f"{hw[0]}x{hw[1]} " if hw else ""
    if hw is not None and min(hw) < MIN_MAP_SIDE:
        return (f"the CAM's {size}map is too coarse to place the object (fewer than "
                f"{MIN_MAP_SIDE} cells a side)")  # fmt: skip
    if both and known and max(known) > BOTH_MAX_OBJECT_SHARE:
        return (f"the object covers {max(known):.0%} of the image (more than a third): "
                "a CAM on it scores too little above an even spread to tell a cue")  # fmt: skip
    if both and cells is not None and cells < MIN_OBJECT_CELLS:
        return (f"the CAM's {size}map is too coarse: the object covers {cells:.1f} of its "
                f"cells, fewer than {MIN_OBJECT_CELLS:g}")  # fmt: skip
    return ""


def learnt(
    accuracy: float | None, classes: int | None = None, commonest: float | None = None
) -> bool:
    """Whether the training probe's eval-mode ``accuracy`` lets the shortcut rules judge.

    At least ``MIN_PROBE_ACC`` and ``OVER_CHANCE`` x chance, or halfway from chance to all
    right where that is less; chance is ``1 / classes``, or ``commonest``, the probe's
    commonest class's share, where more: answering that class for every image scores it,
    and every CAM is then one class's (setups hunt 80: an untrained inception_v3 answering
    class 3 for all 8 probe images, 5 of them class 3, was told a cue at a fixed place).
    Unknown (``None``): judged.

    Example::

        >>> learnt(0.5, 10), learnt(0.5, 2), learnt(0.75, 2), learnt(0.4), learnt(None)
        (True, False, True, False, True)
        >>> learnt(0.625, 10, commonest=0.625), learnt(0.9, 10, commonest=0.625)
        (False, True)
    """
    if accuracy is None:
        return True
    chance = max(1.0 / classes if classes else 0.0, commonest or 0.0)
    return accuracy >= max(MIN_PROBE_ACC, min(OVER_CHANCE * chance, (1.0 + chance) / 2))


def needs_object(right_without: float | None, classes: int | None) -> bool:
    """Whether the model loses its class once the object is removed (``True``: no shortcut).

    ``right_without``: the training probe's share still classified right with its object
    replaced by the background (``gradcam/train/right_without_object``); it needs the
    object below halfway from chance (``1 / classes``) to all of them. Unknown (no
    measure, no class count): ``False``, the CAM alone decides.

    Example::

        >>> needs_object(0.12, 100), needs_object(1.0, 10), needs_object(0.6, 2)
        (True, False, True)
        >>> needs_object(None, 10)
        False
    """
    if right_without is None or not classes:
        return False
    chance = 1.0 / classes
    return right_without < chance + KEPT_SHARE * (1.0 - chance)


def val_lags(accuracy: float | None, val_accuracy: float | None, classes: int | None) -> bool:
    """Whether the val probe's eval-mode accuracy lags far behind the training probe's.

    Far: under halfway from chance (``1 / classes``) to the training probe's accuracy.
    Then a CAM off the object on both splits reads a cue validation images lack (hunt 109:
    a corner patch on one class's training images only, val at chance all run, was said
    "a cue that validation images carry too"). Unknown: ``False``.

    Example::

        >>> val_lags(1.0, 0.5, 2), val_lags(1.0, 0.875, 2), val_lags(1.0, 0.75, 10)
        (True, False, False)
        >>> val_lags(None, 0.5, 2)
        False
    """
    if accuracy is None or val_accuracy is None or not classes:
        return False
    chance = 1.0 / classes
    return val_accuracy < chance + 0.5 * (accuracy - chance)
