"""The val probe's eval-mode logits, read from the validation loop instead of a probe pass.

Nothing here knows about Lightning. The validation loop already runs the model in
eval mode over the val set, the val probe's images included. For one validation,
``LoopLogits`` taps the module's forward (``core.capture.tap_forward``) and keeps, of
each batch of the first val loader, the logits and labels of the rows whose position
in the loader is a probe index (a sequential sampler: position = dataset index). They
stay on the device as one-row slices (no host sync per batch); ``take`` puts them in
the probe's order at the evaluation. The evaluation checks their labels against the
probe's (one transfer) and runs its own val probe pass whenever anything does not fit:
no probe drawn yet, a sampler that is not sequential, ``validation_step`` not calling
the module's forward (or calling it on something else than the batch), logits that are
not ``(batch, classes)``, no integer labels in the batch, probe images never reached
(``limit_val_batches``). ``why`` says what did not fit.

Example::

    >>> import torch
    >>> from torch import nn
    >>> net, x, y = nn.Linear(2, 3), torch.randn(6, 2), torch.tensor([0, 1, 2, 0, 1, 2])
    >>> loop = LoopLogits()
    >>> loop.start(net, [4, 1], logits=lambda out: out, label_key=None)
    >>> for batch in ((x[:3], y[:3]), (x[3:], y[3:])):
    ...     loop.batch_start(0)
    ...     _ = net(batch[0])
    ...     loop.batch_end(batch, 0)
    >>> loop.stop()
    >>> logits, labels = loop.take()
    >>> torch.equal(logits, net(x[[4, 1]]).detach()), labels.tolist(), len(net._forward_hooks)
    (True, [1, 1], 0)
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from lightning_cnnviz.core.batches import batch_labels
from lightning_cnnviz.core.capture import tap_forward

__all__ = ["LoopLogits"]


class LoopLogits:
    """Probe rows of one validation's logits and labels (see the module docstring)."""

    def __init__(self) -> None:
        self._handle: RemovableHandle | None = None
        self.seconds = 0.0  # time spent in the validation loop, for the monitor's timings
        self._start([], None, None)

    def _start(self, indices: Sequence[int], logits: Any, label_key: Any) -> None:
        self._wanted = list(indices)  # the probe's dataset indices, in the probe's order
        self._sorted = sorted(self._wanted)
        self._logits_of: Callable[[Any], Tensor] | None = logits
        self._label_key = label_key
        self._kept: dict[int, tuple[Tensor, Tensor]] = {}  # dataset index -> (logits, label)
        self._seen = 0  # samples of the first loader passed so far
        self._call: Any = None  # the current batch's first forward output
        self._armed = False
        self.why = ""  # why the kept rows cannot stand for the probe pass ("" while they can)

    def start(
        self,
        module: nn.Module,
        indices: Sequence[int],
        *,
        logits: Callable[[Any], Tensor],
        label_key: Any,
    ) -> None:
        """Tap ``module``'s forward for one validation, keeping the rows at ``indices``.

        Args:
            module: what ``validation_step`` calls (the LightningModule).
            indices: the val probe's dataset indices, in the probe's order.
            logits: the logits in the module's output (raises when it cannot tell).
            label_key: where the label is in a batch (``core.batches.batch_labels``).
        """
        self.stop()
        self._start(indices, logits, label_key)
        self._handle = tap_forward(module, self._on_forward)

    def batch_start(self, dataloader_idx: int) -> None:
        """A val batch begins: its first forward call is the one to read (first loader only)."""
        self._call = None
        self._armed = self._handle is not None and dataloader_idx == 0 and not self.why

    def _on_forward(self, args: tuple[Any, ...], output: Any) -> None:
        if self._armed and self._call is None:
            self._call = output

    def batch_end(self, batch: Any, dataloader_idx: int) -> None:
        """Keep the probe rows of the batch that ended (its logits stay on the device)."""
        if not self._armed:
            return
        start, self._armed = time.perf_counter(), False
        try:
            self.why = self._keep(batch)
        except Exception as err:  # never into the user's validation: the probe pass stands in
            self.why = f"reading the val batch failed: {type(err).__name__}: {err}"
        self._call = None
        self.seconds += time.perf_counter() - start

    def _keep(self, batch: Any) -> str:
        if self._call is None:
            return "validation_step did not call the module's forward"
        labels = batch_labels(batch, self._label_key)
        if labels is None:
            return "no integer class labels in the val batches"
        logits = self._logits_of(self._call)  # type: ignore[misc]
        n = labels.shape[0]
        if logits.dim() != 2 or logits.shape[0] != n:
            return f"the forward's logits have shape {tuple(logits.shape)} for a batch of {n}"
        lo = bisect.bisect_left(self._sorted, self._seen)
        hi = bisect.bisect_left(self._sorted, self._seen + n)
        for index in self._sorted[lo:hi]:  # one-row slices: no index tensor, no host sync
            row = index - self._seen
            self._kept[index] = (logits[row : row + 1].detach().clone(), labels[row : row + 1])
        self._seen += n
        return ""

    def stop(self) -> None:
        """Remove the tap (idempotent; at the validation's end and on any exception)."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        self._armed, self._call = False, None

    def take(self) -> tuple[Tensor, Tensor] | None:
        """``(logits (N, K) float32, labels (N,))`` in the probe's order, or ``None``; cleared."""
        kept, wanted, why = self._kept, self._wanted, self.why
        self._start([], None, None)
        if self._handle is not None or not wanted:
            return None
        if why or len(kept) < len(wanted):
            self.why = why or f"the validation reached {len(kept)} of {len(wanted)} probe images"
            return None
        logits = torch.cat([kept[i][0] for i in wanted]).float()
        labels = torch.cat([kept[i][1].to(logits.device) for i in wanted]).long()
        return logits, labels
