"""How a monitor speaks to the user: warnings said once, and stepping aside with a reason.

A monitor that cannot do its job says so once, names itself and the reason, and the
end-of-fit summary lists it (``aside_reason``). ``Voice`` is mixed into ``Monitor``;
it reads the monitor's ``strict``, ``disabled``, ``aside_reason``, ``_warned`` and
``_trainer_ref``. Every warning of the package goes through ``say`` (``core/say.py``).

Example::

    >>> import warnings
    >>> from lightning_cnnviz import KernelMonitor
    >>> monitor = KernelMonitor()
    >>> with warnings.catch_warnings(record=True) as said:
    ...     warnings.simplefilter("always")
    ...     monitor.step_aside("no conv layer")
    ...     monitor.step_aside("no conv layer")
    >>> len(said), monitor.disabled, monitor.aside_reason
    (1, True, 'stepped aside: no conv layer')
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from lightning_cnnviz.core.findings import ASIDE
from lightning_cnnviz.core.outputs import NotApplicable
from lightning_cnnviz.core.say import say

__all__ = ["Voice", "listed", "times"]


def listed(names: Sequence[str], limit: int = 4, quote: bool = True) -> str:
    """``names`` as a message lists them: the first ``limit``, then how many more.

    Example::

        >>> listed(["conv1", "conv2", "fc"], 2)
        '`conv1`, `conv2` and 1 more'
    """
    shown = ", ".join(f"`{n}`" if quote else n for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def times(ratio: float) -> str:
    """A ratio as a message says it: ``100x``, or ``1e+31x`` where digits would run on.

    Example::

        >>> times(99.6), times(1e31), times(12_345)
        ('100x', '1e+31x', '12345x')
    """
    return f"{ratio:.0e}x" if ratio >= 1e6 else f"{ratio:.0f}x"


class Voice:
    """Warn-once and step-aside, shared by every monitor (a mixin of ``Monitor``)."""

    strict: bool
    disabled: bool
    aside_reason: str
    _warned: set[str]
    _trainer_ref: Any
    gradients_refused: Callable[..., str]  # ``input_form.InputForm``'s
    needs_gradients: ClassVar[bool] = False  # its passes differentiate (Grad-CAM, attacks)

    def warn_once(self, key: str, message: str) -> None:
        """Warn ``message`` (prefixed with the monitor's name) the first time ``key`` comes up.

        The one warn-once mechanism: keys are remembered per monitor for the run.
        """
        if key not in self._warned:
            self._warned.add(key)
            say(f"{self.voice_name}: {message}")

    def say_once_per_run(self, key: str, message: str) -> None:
        """Warn ``message`` once per run, whichever monitor comes to it first (e.g. a guess)."""
        trainer = self._trainer_ref
        said: set[str] = getattr(trainer, "_cnnviz_said", set()) if trainer is not None else set()
        if key in said:
            return
        said.add(key)
        if trainer is not None:
            trainer._cnnviz_said = said  # type: ignore[attr-defined]
        say(f"lightning-cnnviz: {message}")

    @property
    def voice_name(self) -> str:
        """The monitor's name in its warnings, with its ``tag_prefix`` where it has one.

        Two monitors of one type, set apart by their prefixes, say which of them speaks
        (setups hunt 58: two FeatureMapMonitors said the same line about a replaced layer).

        Example::

            >>> from lightning_cnnviz import KernelMonitor
            >>> KernelMonitor().voice_name, KernelMonitor(tag_prefix="b").voice_name
            ('KernelMonitor', "KernelMonitor (tag_prefix 'b/')")
        """
        prefix = getattr(self, "tag_prefix", "")
        return type(self).__name__ + (f" (tag_prefix {prefix!r})" if prefix else "")

    def step_aside(self, reason: str) -> None:
        """Stop for the rest of this run because the model or data do not fit this monitor.

        One warning naming the monitor and ``reason`` (even with ``strict``: nothing failed);
        the end-of-fit summary lists it among the checks that did not run, with ``reason``.
        """
        if self.disabled:
            return
        self.disabled, self.aside_reason = True, f"{ASIDE}{reason}"
        if f"aside:{reason}" in self._warned:  # said in this run (a Tuner's trial fit first)
            return
        self._warned.add(f"aside:{reason}")
        say(f"{self.voice_name} steps aside for the rest of this run (training goes on): {reason}")

    def _step_aside(self, err: Exception) -> None:
        # the model cannot take a probe at all (``core.probe_call``), or a gradient pass
        # (``InputForm.gradients_refused``): its reason, not the error
        unfit = getattr(self._trainer_ref, "_cnnviz_unfit", None)
        if not unfit and self.needs_gradients and not isinstance(err, NotApplicable):
            unfit = self.gradients_refused(self._trainer_ref)
        if isinstance(err, NotApplicable) or unfit:
            self.step_aside(str(err) if isinstance(err, NotApplicable) else unfit)
            return
        if self.strict:
            raise err
        self.disabled = True
        self.aside_reason = f"{ASIDE}{type(err).__name__}: {err}"
        say(
            f"{self.voice_name} failed and steps aside for the rest of this run "
            f"(training goes on): {type(err).__name__}: {err}. "
            "Pass `strict=True` to raise instead."
        )
