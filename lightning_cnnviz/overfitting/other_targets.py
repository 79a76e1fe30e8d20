"""A loss or logged accuracy that reads other targets, or other outputs, than the model's.

Nothing here knows about Lightning. With the training probe at chance (the outputs
``forward`` returns, on training images), a loss ``training_step`` returns near 0
(``loss_blind``), or a logged train accuracy far above the probe's (``other_outputs``),
measure something else than those outputs against their labels: targets taken from the
model itself, a loss on an auxiliary head. Not where BatchNorm's running statistics put
the eval-mode probes at chance (``_batch_stats_explain``).

Example::

    >>> row = dict(classes=10.0, probe_size=128.0, probe_acc_train=0.09)
    >>> other_outputs(Evaluation(64, 1, train_acc=0.88, **row))
    True
"""

from __future__ import annotations

import math

from lightning_cnnviz.overfitting.chance_levels import chance_band
from lightning_cnnviz.overfitting.evaluation import Evaluation
from lightning_cnnviz.overfitting.returned_loss import remapped
from lightning_cnnviz.overfitting.words import finite

__all__ = [
    "BLIND_LOSS",
    "BLIND_RATIO",
    "LOGGED_APART",
    "loss_blind",
    "other_outputs",
    "prior_entropy",
    "relabelled",
]

PRIOR_SHARE = 0.9  # a returned loss this share of the labels' least entropy: the prior's


def prior_entropy(top_share: float | None) -> float:
    """The least entropy of training labels whose commonest class holds ``top_share``.

    What a model that knows only the labels' shares returns on training batches: on 4%
    positives 0.168, while on the class-balanced probe its cross-entropy is 1.57 (hunt 92:
    a one-logit head initialised at the prior under Adam 1e-7 was told "the loss does not
    measure the labels"). Shares under a half: 0 (no bound read here).

    Example::

        >>> round(prior_entropy(0.96), 3), prior_entropy(None), prior_entropy(0.3)
        (0.168, 0.0, 0.0)
    """
    t = top_share or 0.0
    if not 0.5 <= t < 1.0:
        return 0.0
    return -(t * math.log(t) + (1.0 - t) * math.log(1.0 - t))


LOGGED_APART = 0.4  # a logged train accuracy this far above the train probe's at chance
# ... and above the commonest training class's share by more than this: on 4% positives a
# model answering "no" everywhere logs 96% while the class-balanced probe reads 50% (hunt
# 92: told "the loss and the logged accuracy read other outputs than `forward` returns")
MAJORITY_SLACK = 0.02
BLIND_LOSS = 0.1  # a returned loss under this share of ln K while training images are at chance
BLIND_RATIO = 4.0  # ... or the model's own cross-entropy on them this many times over it
BLIND_BELOW = 0.8  # ...itself under this share of ln K: one at chance measures a guess


def _batch_stats_explain(e: Evaluation) -> bool:
    """Whether the val probe with batch statistics stands ``LOGGED_APART`` above eval mode.

    Or above chance at all (``chance_band`` on the images that pass saw): the outputs
    ``forward`` returns are trained then. Either way BatchNorm's running statistics, not
    the loss or the logged metrics, put the eval-mode probes at chance (``bn_mismatch``
    tells it). Held out (hunt 88): a torchvision MobileNetV3 (BatchNorm momentum 0.01) at
    chance in eval mode, 46-53% on 4 classes with batch statistics, was told "the loss and
    the logged accuracy read other outputs than those `forward` returns".

    Example::

        >>> row = dict(classes=4.0, probe_size=128.0, bn_size=96.0, probe_acc_val=0.25)
        >>> _batch_stats_explain(Evaluation(64, 1, probe_acc_bn=0.47, **row))
        True
        >>> _batch_stats_explain(Evaluation(64, 1, probe_acc_bn=0.3, **row))
        False
    """
    if (e.bn_gap_acc or 0.0) >= LOGGED_APART:
        return True
    if e.probe_acc_bn is None or not e.classes or e.classes < 2:
        return False
    return e.probe_acc_bn > chance_band(int(e.classes), int(e.bn_size or e.probe_size or 0))


def loss_blind(e: Evaluation) -> bool:
    """Whether the loss ``training_step`` returns is low while the labels are not learnt.

    Under ``BLIND_LOSS`` x ``ln K``, or the model's own cross-entropy on the training probe
    ``BLIND_RATIO`` x over it (and the loss under ``BLIND_BELOW`` x ``ln K``: a loss at its
    chance level measures a model at chance, whatever broke its eval-mode outputs; hunt 46:
    2.37 against 1.5e8, "far below its chance level"), with the train probe at chance: the
    loss measures something else than the labels, or other outputs than the model's. Held
    out (hunt 14): a model trained on its own argmax had a training loss of 0.000 at 9.5%
    train accuracy, told "not learning" with no cause; (hunt 43) the loss on a second head,
    0.37 against 4.4 on the outputs ``forward`` returns, at 8.6%, likewise.

    Example::

        >>> row = dict(classes=10.0, probe_size=128.0, probe_acc_train=0.09)
        >>> loss_blind(Evaluation(90, 2, returned_loss=0.001, **row))
        True
        >>> loss_blind(Evaluation(90, 2, returned_loss=2.2, **row))
        False
        >>> loss_blind(Evaluation(90, 2, returned_loss=2.3e-8, first_loss=2.3e-8, **row))
        False
        >>> loss_blind(Evaluation(90, 2, returned_loss=0.37, probe_loss_train=4.4, **row))
        True
        >>> loss_blind(Evaluation(90, 2, returned_loss=2.37, probe_loss_train=1.5e8, **row))
        False
        >>> bn = dict(probe_acc_val=0.1, probe_acc_bn=0.9)  # BatchNorm's running statistics
        >>> loss_blind(Evaluation(90, 2, returned_loss=0.001, **row, **bn))
        False
    """
    if e.classes is None or e.classes < 2 or not finite(e.returned_loss):
        return False
    if _batch_stats_explain(e):
        return False
    k = int(e.classes)
    prior = prior_entropy(e.top_share)
    if prior > 0 and e.returned_loss >= PRIOR_SHARE * prior:  # type: ignore[operator]
        return False  # what knowing the labels' shares alone scores (hunt 92)
    own = e.probe_loss_train
    apart = finite(own) and 0 < e.returned_loss < BLIND_BELOW * math.log(k)  # type: ignore[operator]
    apart = apart and own >= BLIND_RATIO * e.returned_loss  # type: ignore[operator]
    if e.returned_loss >= BLIND_LOSS * math.log(k) and not apart:  # type: ignore[operator]
        return False
    if finite(e.first_loss) and e.first_loss < BLIND_LOSS * math.log(k):  # type: ignore[operator]
        # as small before any update: a loss scaled down (``scaled_loss``), not one that
        # learnt to ignore the labels (hunt 27: a cross-entropy x1e-8 under Adam)
        return False
    if e.probe_acc_train is not None:
        return e.probe_acc_train <= chance_band(k, int(e.probe_size or 0))
    return e.train_acc is not None and e.train_acc <= 1.5 / k


def other_outputs(e: Evaluation) -> bool:
    """Whether the logged train accuracy reads other outputs than those ``forward`` returns.

    ``LOGGED_APART`` or more above the train probe's, which is at chance, where the val
    probe with batch statistics is not as far above its eval-mode self (BatchNorm's running
    statistics, ``bn_mismatch``): the loss and the logged accuracy on an auxiliary head
    (hunt 41: 88% logged, the head ``forward`` returns never trained, 8.6% on training
    images, told as a train/val gap with labels meaning different things in the splits).

    Example::

        >>> row = dict(classes=10.0, probe_size=128.0, probe_acc_train=0.09)
        >>> other_outputs(Evaluation(64, 1, train_acc=0.88, **row))
        True
        >>> other_outputs(Evaluation(64, 1, train_acc=0.3, **row))
        False
        >>> bn = dict(probe_acc_val=0.1, probe_acc_bn=0.9)  # eval mode's running statistics
        >>> other_outputs(Evaluation(64, 1, train_acc=0.88, **row, **bn))
        False
    """
    own, logged = e.probe_acc_train, e.train_acc
    if own is None or logged is None or not e.classes or e.classes < 2:
        return False
    if _batch_stats_explain(e):
        return False
    if e.top_share is not None and logged <= e.top_share + MAJORITY_SLACK:
        return False  # answering the commonest training class scores that much (hunt 92)
    chance = chance_band(int(e.classes), int(e.probe_size or 0))
    return own <= chance and logged - own >= LOGGED_APART


def relabelled(e: Evaluation) -> bool:
    """Whether a blind loss (``loss_blind``) measures the loader's labels remapped.

    The val probe answered one-to-one with other classes (``returned_loss.remapped``) and
    under half of chance, ``0.5 / K``: a model that learnt nothing scores chance; one
    that fits its loss while answering each class with another learnt another labelling
    of the same images (hunt 91: ``training_step`` mapping ``y -> (y + 3) % 10`` from step
    150, val 1.6%, told "targets taken from the model's own output").

    Example::

        >>> row = dict(classes=10.0, probe_size=128.0, returned_loss=0.5, probe_loss_train=8.0,
        ...            probe_acc_train=0.0, probe_acc_val=0.016)
        >>> relabelled(Evaluation(228, 5, remap_share=0.95, **row))
        True
        >>> relabelled(Evaluation(228, 5, remap_share=0.1, **row))
        False
    """
    k, acc = e.classes or 0.0, e.probe_acc_val
    if not remapped(e) or acc is None or not acc < 0.5 / k:
        return False
    return loss_blind(e)
