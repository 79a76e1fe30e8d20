"""Which probe passes one evaluation runs, and why the others are skipped.

Nothing here knows about Lightning. Besides the val probe's eval-mode logits (read from
the validation loop, ``loop_logits.py``), an evaluation may run two passes of the model,
each costing about as much as 0.5 (resnet18) to 2 (resnet50) training steps:

* **batch statistics** (the val probe with BatchNorm on batch statistics, for the
  ``bn_mismatch`` rule) runs when a cheap screen says the rule could fire. The module's
  logged train accuracy is measured in training mode, i.e. on batch statistics; the val
  probe's batch-statistics accuracy is no higher than it plus the generalisation gap
  seen at the last pass (``bn_screen``). The first pass always runs: a logged train
  accuracy is often an epoch's mean, far below the batch-statistics accuracy at the
  epoch's end (a small ResNet's first validation: the screen said no gap where the pass
  found 11 points, and the mismatch was found a validation late or not at all). It runs
  when that estimate of ``probe_acc_bn - probe_acc_val`` reaches half the rule's
  threshold (``bn_levels.part_threshold``, its paired error estimated from the share of
  images the last pass found right in one pass only), when the module logs no train
  accuracy (nothing to screen with), and while the latest measured evaluation was parted (a mismatch
  starting or reported: confirmed, updated or cleared). A skipped evaluation carries the
  estimate (``Evaluation.bn_screen``) and counts as not parted. Multi-hot targets have
  no accuracy to screen with: the pass runs at every evaluation there (``ranked``; one
  forward of the probe's first images, as the first pass for class labels; hunt 110).
* **train probe** (calibration and accuracy on training images, eval mode): every
  evaluation when the module logs no train accuracy (the probe's stands in for it),
  else every ``TRAIN_EVERY``-th evaluation from the second (the first pays for drawing
  the probes and, with BatchNorm, the screen's baseline pass) and at any evaluation
  that reports an overfitting or memorisation finding for the first time
  (``cites_train``: its evidence includes the train/val calibration; the caller
  decides after a dry run of the rules). Updates of a
  finding (worse, gone) keep the cadence: they would otherwise bring the pass at every
  evaluation of an overfitting run.

Each extra pass sees at most ``PASS_BATCHES`` training batches' worth of the probe's
images (``pass_images``, never fewer than ``MIN_PASS``; its first ones, still balanced:
classes take turns in a probe). A forward pass without backward costs a quarter to a
third of a training step per batch, so a resnet50 trained at batch 16 pays 0.7-0.9
steps per pass rather than 2.5-2.8 for 128 images; a batch of 43 or more keeps the
whole 128-image probe. The batch-statistics rule judges the pass's own images
(``Evaluation.bn_size``), paired.

Example::

    >>> from lightning_cnnviz.overfitting.evaluation import Evaluation
    >>> healthy = [Evaluation(0, 0, train_acc=0.9, probe_acc_val=0.9, probe_acc_bn=0.9)]
    >>> p = plan(healthy, train_acc=0.92, eval_acc=0.9, probe_size=128, batch_norm=True)
    >>> p.train, p.batch_stats, round(p.screen, 2)
    (True, False, 0.02)
    >>> plan(healthy, train_acc=0.95, eval_acc=0.6, probe_size=128, batch_norm=True).batch_stats
    True
    >>> plan(healthy, train_acc=None, eval_acc=0.9, probe_size=128, batch_norm=True).why["train"]
    'the module logs no train accuracy: the train probe stands in for it'
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from lightning_cnnviz.overfitting import bn_levels
from lightning_cnnviz.overfitting.detector import Change
from lightning_cnnviz.overfitting.evaluation import Evaluation

__all__ = [
    "CITE_TRAIN",
    "MIN_PASS",
    "PASS_BATCHES",
    "TRAIN_EVERY",
    "Plan",
    "bn_screen",
    "cites_train",
    "pass_images",
    "plan",
]

TRAIN_EVERY = 4
"""Evaluations per train probe pass when the module logs its train accuracy."""

CITE_TRAIN = ("overfitting", "memorisation", "generalisation_gap", "not_learning")
"""The findings whose first report brings the train probe pass (train vs val calibration;
for a gap or a model not learning, whether the model's own outputs learnt the training
images the logged train accuracy says: hunt 41, a loss on an auxiliary head, the head
``forward`` returns untrained, told as labels meaning different things in the splits)."""


PASS_BATCHES = 3
"""Training batches' worth of images an extra pass sees at most."""

MIN_PASS = 32
"""Images an extra pass sees at least (fewer cannot tell a mismatch from noise)."""


def pass_images(probe_size: int, batch_images: int | None) -> int:
    """Images of a ``probe_size`` probe an extra pass sees (training batches of ``batch_images``).

    Example::

        >>> pass_images(128, 64), pass_images(128, 16), pass_images(128, 4), pass_images(128, None)
        (128, 48, 32, 128)
    """
    if batch_images is None:  # not seen yet: the whole probe
        return probe_size
    return min(probe_size, max(MIN_PASS, PASS_BATCHES * batch_images))


def cites_train(changes: Iterable[Change]) -> bool:
    """Whether ``changes`` report a finding of ``CITE_TRAIN`` for the first time."""
    return any(c.change == "new" and c.verdict.kind in CITE_TRAIN for c in changes)


@dataclass(frozen=True)
class Plan:
    """The passes of one evaluation.

    Attributes:
        train: run the train probe.
        batch_stats: run the val probe with BatchNorm on batch statistics.
        screen: the batch-statistics screen's estimated gap (``None``: no screen).
        why: for ``"train"`` and ``"batch_stats"``, why the pass runs or is skipped.
    """

    train: bool
    batch_stats: bool
    screen: float | None = None
    why: dict[str, str] = field(default_factory=dict)


def bn_screen(history: Sequence[Evaluation], train_acc: float, eval_acc: float) -> float:
    """Upper estimate of ``probe_acc_bn - probe_acc_val`` from the logged train accuracy.

    The batch-statistics accuracy on val images is taken as that of the latest pass plus
    any rise of the train accuracy since (the generalisation gap it showed kept), or the
    train accuracy itself before any pass; at most 1.

    Example::

        >>> bn_screen([], train_acc=0.95, eval_acc=0.6)
        0.35
        >>> last = Evaluation(0, 0, train_acc=0.99, probe_acc_val=0.8, probe_acc_bn=0.82)
        >>> round(bn_screen([last], train_acc=0.99, eval_acc=0.78), 2)  # the gap is generalisation
        0.04
    """
    last = next(
        (e for e in reversed(history) if e.probe_acc_bn is not None and e.train_acc is not None),
        None,
    )
    if last is None:
        batch_stats = train_acc
    else:
        batch_stats = last.probe_acc_bn + max(0.0, train_acc - last.train_acc)  # type: ignore[operator]
    return min(batch_stats, 1.0) - eval_acc


def plan(
    history: Sequence[Evaluation],
    *,
    train_acc: float | None,
    eval_acc: float | None,
    probe_size: float,
    batch_norm: bool,
    left_out: bool = False,
    ranked: bool = False,
    train_moved: bool = False,
) -> Plan:
    """The passes of the evaluation that follows ``history``.

    Args:
        history: the evaluations so far (oldest first).
        train_acc: the logged train accuracy (training mode), ``None`` when not logged.
        eval_acc: the val probe's eval-mode accuracy (``None``: no usable val logits).
        probe_size: images the batch-statistics pass sees (``pass_images``).
        batch_norm: whether the model has BatchNorm layers in training mode.
        left_out: whether the val probe leaves a class out (``class_figures.ignored_classes``):
            the train probe then tells whether training images of it are learnt, and
            batch statistics whether eval mode's running statistics leave it out.
        ranked: whether the val probe's targets are multi-hot labels whose eval-mode AUC
            was read (``bn_ranks.ranked``): no accuracy, the batch-statistics pass every time.
        train_moved: whether the training items changed since the train probe was first
            read (``train_items.py``): with a batch-statistics pass, the train probe's eval
            mode tells the splits apart from a lag (``gap.kept_on_train_images``).

    Example::

        >>> p = plan([], train_acc=None, eval_acc=None, probe_size=128, batch_norm=True,
        ...          ranked=True)
        >>> p.batch_stats, p.why["batch_stats"]
        (True, 'multi-hot targets: their AUC on batch statistics, every evaluation')
    """
    why: dict[str, str] = {}
    index = len(history)
    if train_acc is None:
        train, why["train"] = (
            True,
            "the module logs no train accuracy: the train probe stands in for it",
        )
    elif index % TRAIN_EVERY == 1 % TRAIN_EVERY:
        train, why["train"] = True, f"every {TRAIN_EVERY}th evaluation from the second"
    else:
        train, why["train"] = (
            False,
            f"runs every {TRAIN_EVERY}th evaluation (train accuracy is logged)",
        )
    if left_out and not train:
        train, why["train"] = (
            True,
            "a class is left out on the val probe: learnt on training images?",
        )
    screen = None
    if batch_norm and eval_acc is None and ranked:  # no accuracy to screen with (hunt 110)
        bn = True
        why["batch_stats"] = "multi-hot targets: their AUC on batch statistics, every evaluation"
    elif not batch_norm or eval_acc is None:
        bn = False
        why["batch_stats"] = (
            "no BatchNorm layer in training mode" if not batch_norm else "no val logits"
        )
    elif train_acc is None:
        bn, why["batch_stats"] = True, "no logged train accuracy to screen with"
    else:
        screen = bn_screen(history, train_acc, eval_acc)
        measured = [e for e in history if e.probe_acc_bn is not None]
        # half the rule's bar, its paired error estimated from the last pass's discordance
        last = bn_levels.discordant(measured[-1]) if measured else None
        acc = min(1.0, eval_acc + max(screen, 0.0))
        bar = 0.5 * bn_levels.part_threshold(acc, probe_size, last, max(screen, 0.0))
        if not measured:  # the logged train accuracy is an epoch's mean: early, it lags
            bn, why["batch_stats"] = True, "the first pass: the screen's baseline"
        elif bn_levels.parted(measured[-1]):
            bn, why["batch_stats"] = True, "the latest pass found a mismatch: confirm or clear it"
        elif screen >= bar:
            bn, why["batch_stats"] = True, f"screen: estimated gap {screen:.3f} >= {bar:.3f}"
        else:
            bn, why["batch_stats"] = False, f"screen quiet: estimated gap {screen:.3f} < {bar:.3f}"
    if batch_norm and eval_acc is not None and left_out and not bn:
        bn, why["batch_stats"] = True, "a class is left out on the val probe: eval mode's doing?"
    if train_moved and bn and not train:  # held-out hunt 125: a cue on training images only
        train, why["train"] = (
            True,
            "the training items changed: eval mode on them, beside BatchNorm's",
        )
    return Plan(train, bn, screen, why)
