"""What the module logs, read for ``OverfittingMonitor``: a part of the monitor.

``LoggedReads`` reads the logged metrics at each evaluation: default names the module
logs in other words (``metric_alias``), accuracies as shares of 1 (a percentage read as
one, an R^2 logged as `val_acc` left out), the training loss as the interval's mean where
the logged value is one batch's, and what is missing, said once. ``step_only`` tells a
metric logged per step only (its value: the latest batch's).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from lightning.pytorch import Trainer

from lightning_cnnviz.core.run_datasets import has_val_data, no_val_why
from lightning_cnnviz.core.say import tell
from lightning_cnnviz.overfitting.interval_loss import IntervalLoss
from lightning_cnnviz.overfitting.metric_names import logged_name, metric_alias
from lightning_cnnviz.overfitting.metrics import pick_metric
from lightning_cnnviz.overfitting.text import missing_text

__all__ = ["PERCENT", "LoggedReads", "step_only"]

PERCENT = 1.5  # a logged accuracy above this (to 100) is a percentage


class LoggedReads:
    """Reads the module's logged metrics (a part of ``OverfittingMonitor``).

    Reads the monitor's ``keys``; adopts aliases into them and keeps the names found to be
    no accuracy.
    """

    keys: dict[str, str]
    _aliasable: set[str]  # the names left at their defaults, not yet found logged otherwise
    _epoch_end: bool
    _interval: IntervalLoss
    _batch_images: int | None  # images in a training batch (None: none seen yet)
    _latest_images: int | None  # images in the latest one (an epoch's last may be short)
    _not_accuracy: set[str]  # logged "accuracies" that are none (``_share``)

    def _read_logged(
        self, trainer: Trainer
    ) -> tuple[Mapping[str, Any], dict[str, Any], dict[str, Any]]:
        """The logged metrics, each key's value, and the figures read beside them.

        The second: ``train_loss`` as the interval's mean where the logged value is one
        batch's. The third: ``seenFalse``/``seenTrue`` (the train accuracy's latest step and
        epoch mean, for the BatchNorm screen), ``returned_loss`` (what the optimiser
        lowers, logged or not), ``first_loss`` (its first step's), ``start_loss`` (its
        first steps') and ``recent_loss`` (its last steps').
        """
        logged = trainer.callback_metrics  # read once: each read recomputes Lightning's results
        self._adopt_aliases(logged)
        found = {
            n: pick_metric(logged, k, self._epoch_end or n[:3] == "val")
            for n, k in self.keys.items()
        }
        self._accuracies(found)
        if any(k.endswith("/dataloader_idx_0") for k in logged):  # Lightning's suffix: 2+
            val_key = self.keys["val_loss"]
            self.warn_once("loaders", f"the run has several validation dataloaders: the val "
                           f"curves are read from the first one's (`{val_key}/dataloader_idx_"
                           "0`), the loader the val probe is drawn from; the others are not "
                           "judged.")  # fmt: skip
        # mid-epoch, a step-logged key holds one batch's loss: the interval's mean instead;
        # so at the epoch's end where it is logged per step only
        step_loss, interval = found["train_loss"], self._interval
        one_batch = not self._epoch_end or step_only(trainer, self.keys["train_loss"])
        one_batch = one_batch and step_loss is not None
        one_batch = one_batch and interval.same_as_last(step_loss)  # type: ignore[arg-type]
        mean = interval.read()  # and a new interval from this evaluation on
        if one_batch:
            found["train_loss"] = mean
        # the screen's train accuracy: the higher of the epoch mean (lags while learning) and
        # the latest step's value (one batch), so that a lag does not hide a mismatch
        key = self.keys["train_acc"]
        extra = {f"seen{e}": self._share("train_acc", pick_metric(logged, key, e))
                 for e in (False, True)}  # fmt: skip
        extra["returned_loss"], extra["first_loss"] = mean, interval.first
        extra["recent_loss"], extra["start_loss"] = interval.recent, interval.start
        return logged, found, extra

    def _acc_images(self, trainer: Trainer, found: Mapping[str, Any]) -> float | None:
        """Images behind the logged train accuracy where it is one batch's (else ``None``).

        The latest batch's: at an epoch's end maybe a short last one
        (``Evaluation.short_batch_acc``).
        """
        # mid-epoch the train accuracy is the latest batch's: 63/64 -> 64/64 is no climb; so
        # at the epoch's end where it is logged per step only (the last, maybe short, batch)
        one = not self._epoch_end or step_only(trainer, self.keys["train_acc"])
        batch = self._latest_images if one and found["train_acc"] is not None else None
        return float(batch) if batch else None

    def _say_missing(
        self, trainer: Trainer, logged: Mapping[str, Any], found: Mapping[str, Any], probes: bool
    ) -> None:
        """Say once which metrics are not logged, or that the probes cannot be read."""
        missing = {n: self.keys[n] for n, v in found.items() if v is None}
        # per-position logits, or no scores at all: why the probes are skipped is said
        said = bool({"dense", "scores_misfit"} & self._warned)
        if not missing and (probes or said):
            return
        target = self.probe(trainer, "val").target
        text = missing_text(missing, probes or said, logged, target)
        val = {n: k for n, k in missing.items() if n.startswith("val")}
        if val and not has_val_data(trainer):  # a loader of no item validates nothing
            # (setups hunt 73: an empty first of two val loaders told to pass `val_loss_key`)
            text = (
                f"cannot find {', '.join(f'`{k}`' for k in val.values())}: "
                f"{no_val_why(trainer)}, so nothing it reads was validated; what needs them is "
                "skipped."
            )
        if missing and getattr(trainer, "barebones", False):  # `self.log` is off
            text = (
                f"cannot find {', '.join(f'`{k}`' for k in missing.values())}: "
                "`Trainer(barebones=True)` turns `self.log` off, so what needs logged "
                "metrics is skipped (the probes' own figures still run)."
            )
        self.warn_once("missing", text)

    def _adopt_aliases(self, logged: Mapping[str, Any]) -> None:
        """Read a default metric name the module logs in other words (``metric_alias``).

        Said in one line for all the names adopted at once.
        """
        said = []
        for name in sorted(self._aliasable):
            alias = metric_alias(self.keys[name], logged)
            if alias is None:
                continue
            self._aliasable.discard(name)
            said.append(f"`{alias}` for `{self.keys[name]}`")
            self.keys[name] = alias
        if said:
            tell(
                f"{type(self).__name__}: reads {', '.join(said)} (the same metrics in other "
                "words); pass `train_loss_key`, `val_loss_key`, `train_acc_key` or "
                "`val_acc_key` to read others."
            )

    def _accuracies(self, found: dict[str, Any]) -> None:
        """Keep the logged accuracies that are accuracies (``_share``), in place."""
        for name in ("train_acc", "val_acc"):
            found[name] = self._share(name, found.get(name))

    def _share(self, name: str, value: Any) -> Any:
        """A logged accuracy as a share of 1: as it is in 0..1, a percentage (to 100) / 100.

        A metric outside both (R^2 logged as `val_acc` read -0.79) is no accuracy: said once,
        and ``None`` for the rest of the fit.
        """
        if value is None or name in self._not_accuracy:
            return None
        v = float(value)
        if not math.isfinite(v) or 0.0 <= v <= PERCENT:  # a hair over 1: rounding, kept
            return value
        if PERCENT < v <= 100.0:
            self.warn_once(f"percent/{name}", f"`{self.keys[name]}` reads {v:.4g}: read as a "
                           "percentage (accuracies are shares of 1 here).")  # fmt: skip
            return value / 100.0  # a tensor stays one
        self._not_accuracy.add(name)
        self.warn_once(f"accuracy/{name}", f"`{self.keys[name]}` reads {v:.4g}, which no "
                       "accuracy does: it is left out of the rules (pass `"
                       f"{name}_key=` the name of the logged accuracy).")  # fmt: skip
        return None


def step_only(trainer: Trainer, key: str) -> bool:
    """Whether ``training_step`` logs ``key`` per step only (its value: the latest batch's).

    Read from Lightning's record of how each training metric is logged; ``False`` where
    that cannot be read (an epoch mean assumed, as before).
    """
    try:
        results = trainer.fit_loop.epoch_loop._results
        metas = [m.meta for m in results.values() if logged_name(m.meta.name) == key]
    except Exception:  # Lightning's internals moved: assume an epoch mean
        return False
    return bool(metas) and all(m.on_step and not m.on_epoch for m in metas)
