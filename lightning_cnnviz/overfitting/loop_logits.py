"""The val probe's eval-mode logits, read from the validation loop instead of a probe pass.

Nothing here knows about Lightning. The validation loop already runs the model in
eval mode over the val set, the val probe's images included. For one validation,
``LoopLogits`` taps the module's forward (``core.capture.tap_forward``) and keeps, of
each batch of the first val loader, the logits and labels of the rows whose position
in the loader is a probe index (a sequential sampler: position = dataset index). They
stay on the device as one-row slices (no host sync per batch), with a fingerprint of
each row's input (``fingerprint``); ``take`` puts them in the probe's order at the
evaluation. The fingerprints tell a val set whose items changed since the probe read
them (``items_moved``: a transform switched, a val curriculum, a reloaded dataset), whose
cached images the monitor then reads again (held-out hunt 125: the batch-statistics pass
read the images from before the change, 97% against 15% on the loop's). The evaluation
checks their labels against the probe's (one transfer) and runs its own val probe pass
whenever anything does not fit: no probe drawn yet, a sampler that is not sequential,
``validation_step`` not calling the module's forward (or calling it on something else
than the batch), logits that are not ``(batch, classes)``, no integer labels in the
batch, probe images never reached (``limit_val_batches``). ``why`` says what did not fit.

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
    >>> logits, labels, prints = loop.take()
    >>> torch.equal(logits, net(x[[4, 1]]).detach()), labels.tolist(), len(net._forward_hooks)
    (True, [1, 1], 0)
    >>> items_moved(prints, fingerprint(x[[4, 1]])), items_moved(prints, fingerprint(-x[[4, 1]]))
    (False, True)
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

__all__ = ["LoopLogits", "fingerprint", "items_moved"]


def fingerprint(x: Tensor) -> Tensor:
    """Each row's sum and sum of squares, ``(N, 2)`` float32: a cheap print of its values.

    Example::

        >>> fingerprint(torch.tensor([[1.0, 2.0], [0.0, -3.0]])).tolist()
        [[3.0, 5.0], [-3.0, 9.0]]
    """
    flat = x.detach().reshape(len(x), -1).float()
    return torch.stack([flat.sum(1), flat.square().sum(1)], 1)


def items_moved(prints: Tensor | None, before: Tensor | None) -> bool:
    """Whether the loop's inputs at the probe's positions are no longer those of ``before``.

    ``False`` where either print is missing or their shapes differ (nothing to tell by).
    A relative tolerance: the same values summed again may round apart on a device.

    Example::

        >>> p = fingerprint(torch.rand(4, 3))
        >>> items_moved(p, p.clone()), items_moved(p, p * 1.5), items_moved(None, p)
        (False, True, False)
    """
    if prints is None or before is None or prints.shape != before.shape:
        return False
    return not torch.allclose(prints, before.to(prints.device), rtol=1e-4, atol=1e-6)


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
        # dataset index -> (logits, label, input print or None)
        self._kept: dict[int, tuple[Tensor, Tensor, Tensor | None]] = {}
        self._seen = 0  # samples of the first loader passed so far
        self._call: Any = None  # the current batch's first forward output
        self._input: Tensor | None = None  # ... and its input, where a tensor
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
            self._input = args[0] if args and isinstance(args[0], Tensor) else None

    def batch_end(self, batch: Any, dataloader_idx: int) -> None:
        """Keep the probe rows of the batch that ended (its logits stay on the device)."""
        if not self._armed:
            return
        start, self._armed = time.perf_counter(), False
        try:
            self.why = self._keep(batch)
        except Exception as err:  # never into the user's validation: the probe pass stands in
            self.why = f"reading the val batch failed: {type(err).__name__}: {err}"
        self._call = self._input = None
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
        x = self._input if self._input is not None and len(self._input) == n else None
        lo = bisect.bisect_left(self._sorted, self._seen)
        hi = bisect.bisect_left(self._sorted, self._seen + n)
        for index in self._sorted[lo:hi]:  # one-row slices: no index tensor, no host sync
            row = index - self._seen
            print_ = None if x is None else fingerprint(x[row : row + 1])
            self._kept[index] = (logits[row : row + 1].detach().clone(), labels[row : row + 1],
                                 print_)  # fmt: skip
        self._seen += n
        return ""

    def stop(self) -> None:
        """Remove the tap (idempotent; at the validation's end and on any exception)."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        self._armed, self._call, self._input = False, None, None

    def take(self) -> tuple[Tensor, Tensor, Tensor | None] | None:
        """``(logits (N, K) float32, labels (N,), input prints (N, 2) or None)``, or ``None``.

        In the probe's order; cleared. The prints are ``None`` where a row's input was not
        a tensor of the batch's length (``fingerprint``).
        """
        kept, wanted, why = self._kept, self._wanted, self.why
        self._start([], None, None)
        if self._handle is not None or not wanted:
            return None
        if why or len(kept) < len(wanted):
            self.why = why or f"the validation reached {len(kept)} of {len(wanted)} probe images"
            return None
        logits = torch.cat([kept[i][0] for i in wanted]).float()
        labels = torch.cat([kept[i][1].to(logits.device) for i in wanted]).long()
        prints = [kept[i][2] for i in wanted]
        both = all(p is not None for p in prints)
        return logits, labels, torch.cat(prints) if both else None  # type: ignore[arg-type]
