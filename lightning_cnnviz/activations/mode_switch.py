"""BatchNorm and dropout layers switched to eval mode mid-run, while the model trains.

Nothing here knows about Lightning. A ``self.eval()`` in ``training_step``, a callback's
``model.eval()`` never followed by ``train()``, or ``.train(False)`` on a submodule leaves
layers in eval mode during training: BatchNorm then normalises with its running statistics
(no longer updated) instead of the batch's, dropout drops nothing. Held-out hunt 119:
``self.net.eval()`` at the top of ``training_step`` from epoch 5 (SGD 0.02, momentum 0.9,
a BatchNorm CNN) blew the loss up from 0.38 to 11 in one step, and the divergence was told
as "the training batches changing at that step"; the model then sat at chance.

The layers' modes are read at every log (a flag per module: no pass, no host sync); a
layer in training mode at one log and in eval mode at the next switched between them.
Layers in eval mode from the first log on are not a switch (initial statistics held
from the start are ``frozen_norms.py``'s; pretrained ones frozen on purpose, nothing).
A divergence in that window names the switch as its cause (``switch_cause``); without
harm it is a note (freezing trained BatchNorm mid-run is a fine-tuning practice).

Example::

    >>> from torch import nn
    >>> net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Dropout(0.5))
    >>> eval_mode_layers(net)
    ([], [])
    >>> _ = net.eval()
    >>> eval_mode_layers(net)
    (['1'], ['2'])
"""

from __future__ import annotations

from typing import Any

from torch import nn

from lightning_cnnviz.activations.episodes import Verdict
from lightning_cnnviz.core.layer_calls import in_weight_average
from lightning_cnnviz.core.selection import named_layers
from lightning_cnnviz.core.settings import DROPOUT_LAYERS
from lightning_cnnviz.core.voice import listed

__all__ = ["ModeSwitch", "eval_mode_layers", "switch_cause"]


def eval_mode_layers(model: nn.Module) -> tuple[list[str], list[str]]:
    """``(norm layers, dropout layers)`` of ``model`` in eval mode (their flags only).

    Norm layers that keep running statistics (BatchNorm, SyncBatchNorm, an InstanceNorm
    tracking them); a weight average's copy (eval mode by design) is left out.
    """
    norms, drops = [], []
    for name, m in named_layers(model).items():
        if m.training:
            continue
        if isinstance(m, nn.modules.batchnorm._NormBase) and m.running_mean is not None:
            norms.append(name)
        elif isinstance(m, DROPOUT_LAYERS) and m.p > 0:
            drops.append(name)
    if not norms and not drops:
        return norms, drops
    kept = lambda names: [n for n in names if not in_weight_average(model, n)]  # noqa: E731
    return kept(norms), kept(drops)


def switch_cause(switch: tuple[int, int, list[str]]) -> str:
    """A divergence's cause and remedy where norm layers switched to eval mode before it.

    Example::

        >>> switch_cause((200, 250, ["bn1", "bn2"]))[:64]
        'BatchNorm layers `bn1`, `bn2` were switched to eval mode between'
    """
    after, seen, layers = switch
    return (
        f"BatchNorm layers {listed(layers, 6)} were switched to eval mode between steps "
        f"{after} and {seen} while the model trains (a `model.eval()` or `.train(False)` in "
        "`training_step` or a callback, never followed by `model.train()`): they normalise "
        "with running statistics no longer updated instead of the batch's, and the updates "
        "made for those statistics threw the model off; the data and the learning rate did "
        "not change. Try: call `model.train()` after any eval-mode code (or wrap it in a "
        "context that restores each module's mode); freeze BatchNorm on purpose only with "
        "statistics it has learnt, and at a lower learning rate."
    )


def switch_note(
    switch: tuple[int, int, list[str]], drops: list[str], step: int, epoch: int, waits: bool = False
) -> str:
    """The ``eval_mode_switch`` note: layers in eval mode mid-run, no harm seen.

    ``waits``: a loss spike since waits for the next log (held-out hunt 121: a timm
    resnet10t frozen at step 72, its loss 0.07 -> 10.8 by step 78, was told "no harm so far"
    at step 80).

    Example::

        >>> switch_note((200, 250, ["bn1"]), ["drop"], 250, 5)[:62]
        'Layers switched to eval mode while the model trains (seen at s'
        >>> switch_note((200, 250, ["bn1"]), [], 250, 5, waits=True).split("practice, ")[1][:53]
        'and the loss has spiked since (the next log tells whe'
    """
    after, seen, norms = switch
    which = []
    if norms:
        which.append(f"BatchNorm {listed(norms, 6)} (normalising with running statistics "
                     "no longer updated)")  # fmt: skip
    if drops:
        which.append(f"dropout {listed(drops, 6)} (dropping nothing)")
    harm = (
        "the loss has spiked since (the next log tells whether it comes back)"
        if waits
        else "training has taken no harm so far"
    )
    return (
        f"Layers switched to eval mode while the model trains (seen at step {seen}, epoch "
        f"{epoch}; in training mode at step {after}): {' and '.join(which)}. Freezing trained "
        f"BatchNorm mid-run is a fine-tuning practice, and {harm}; "
        "if it was not meant (a `model.eval()` in `training_step` or a callback, never "
        "followed by `model.train()`), call `model.train()` after the eval-mode code."
    )


class ModeSwitch:
    """The layers' modes log by log, and the switch to eval mode (a part of the diagnosis).

    Keeps ``eval_layers`` (those in eval mode at the last log, ``None`` before the first)
    and ``mode_switch`` (``(the last log in training mode, the first in eval mode, the norm
    layers)``) and ``mode_back`` (the log seeing them all in training mode again); the
    diagnosis saves them in checkpoints.
    """

    last_step: int
    eval_layers: list[str] | None
    mode_switch: tuple[int, int, list[str]] | None
    mode_back: int | None
    diverged: int | None
    pending: int | None  # ``DivergenceReview``'s: the log a spike waits from
    _new: Any

    def _note_modes(self, step: int, modes: tuple[list[str], list[str]] | None) -> list[str]:
        """Keep this log's modes; the dropout layers newly switched ([] if none)."""
        if modes is None:
            return []
        norms, drops = modes
        before, self.eval_layers = self.eval_layers, [*norms, *drops]
        if before is None:  # the first log: what is in eval mode there was so from the start
            return []
        if self.mode_switch is not None and self.mode_switch[2]:
            if self.mode_back is None and not set(self.mode_switch[2]) & set(norms):
                self.mode_back = step  # all back in training mode: later spikes are not its
            return []
        new_norms = [n for n in norms if n not in before]
        new_drops = [] if self.mode_switch else [n for n in drops if n not in before]
        if new_norms or new_drops:  # a dropout-only switch gives way to BatchNorm's
            self.mode_switch = (self.last_step, step, new_norms)
        return new_drops

    def _switch_before(self, until: int | None) -> tuple[int, int, list[str]] | None:
        """The norm layers' switch a divergence at step ``until`` followed, if any."""
        switch = self.mode_switch
        if switch is None or not switch[2] or until is None or until < switch[0]:
            return None
        return None if self.mode_back is not None and until > self.mode_back else switch

    def _switch_note(self, step: int, epoch: int, drops: list[str]) -> list[Verdict]:
        """The note of a switch first seen at this log (none where a divergence names it)."""
        switch = self.mode_switch
        if switch is None or switch[1] != step or self.diverged is not None:
            return []
        if not self._new("eval_mode_switch", "note"):
            return []
        waits = self.pending is not None and self.pending > switch[0]  # a spike since
        text = switch_note(switch, drops, step, epoch, waits)
        figures = {"since_step": switch[0], "layers": len(switch[2]) + len(drops)}
        figures |= {"norm_layers": len(switch[2])} if switch[2] else {}  # a cause (root_causes)
        return [Verdict("eval_mode_switch", "note", text, figures)]
