"""Every monitor the safety contract holds, with test-friendly arguments.

Each monitor adds its case in a file of its own (``cases_<monitor>.py``);
``test_contract.py`` runs the whole contract for every entry on every model of the zoo.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from lightning_cnnviz.core.capture import LayerCapture
from lightning_cnnviz.core.monitor import Monitor, with_probe


@dataclass(frozen=True)
class MonitorCase:
    """How to build a monitor for the contract tests.

    Attributes:
        make: builds a fresh monitor that logs often (``every_n_steps`` small).
        every_n_steps: its logging period, to know which steps are logging steps.
        window: how many training batches before a logging step may carry hooks
            (the activation monitor samples a window; all others: 0).
        first_batch: the fit's first training batch may carry read-only taps
            (``OverfittingMonitor``: what ``training_step`` does to the images).
        after_event: the training batch that runs one of its events may carry one
            read-only tap (``OverfittingMonitor``: what ``training_step`` does to them now).
    """

    make: Callable[[], Monitor]
    every_n_steps: int = 2
    window: int = 0
    first_batch: bool = False
    after_event: bool = False


class CaptureOnlyMonitor(Monitor):
    """The trivial monitor: one probe pass that captures conv and ReLU outputs, logs their mean."""

    section = "capture_only"

    def auto_layers(self, model: nn.Module, available: dict[str, nn.Module]) -> list[str]:
        return [n for n, m in available.items() if isinstance(m, nn.Conv2d | nn.ReLU)]

    def log_event(self, trainer, pl_module) -> None:
        x = self.probe_input(trainer, pl_module)
        with with_probe(pl_module), LayerCapture(self.selected, shared=self.shared) as cap:
            pl_module(x)
        means = {self.tag(site, "mean"): float(v.mean()) for site, v in cap.outputs.items()}
        self.sink.scalars(means, trainer.global_step)


def _discover() -> dict[str, MonitorCase]:
    """The trivial monitor plus every ``CASES`` dict of ``tests/contract/cases_*.py``.

    Each monitor adds itself in a file of its own, e.g. ``cases_kernels.py``::

        CASES = {"kernels": MonitorCase(lambda: KernelMonitor(every_n_steps=2))}
    """
    import importlib
    import pkgutil

    import tests.contract as package

    found = {
        "capture_only": MonitorCase(lambda: CaptureOnlyMonitor(every_n_steps=2, num_samples=4))
    }
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("cases_"):
            found.update(importlib.import_module(f"{package.__name__}.{info.name}").CASES)
    return found


MONITORS: dict[str, MonitorCase] = _discover()
