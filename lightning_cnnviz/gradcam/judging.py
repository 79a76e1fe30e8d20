"""The shortcut checks of ``GradCAMMonitor``: a log's CAM metrics judged, findings told.

``ShortcutChecks`` is a part of ``GradCAMMonitor`` (a mixin, as the monitors' parts are):
after a log has written its scalars, ``_judge`` reads the on-object shares, the object's
area and the CAM agreements, runs the on-object rules (``gradcam/shortcut.py``) and the
fixed-spot rule (``gradcam/fixed_spot.py``), records in the run's summary whether each
check could run and why not, and reports what they find. What the rules keep across logs
(``_on_object``, ``_fixed``, ``_ran``) lives on the monitor, which saves it in checkpoints.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch import Trainer

from lightning_cnnviz.core.findings import (
    Finding,
    findings_of,
    problems,
    record_check,
    replace,
    report,
)
from lightning_cnnviz.core.run_datasets import has_val_data, no_val_why
from lightning_cnnviz.core.say import say
from lightning_cnnviz.gradcam.fixed_spot import fixed_blocker, fixed_findings
from lightning_cnnviz.gradcam.gates import area_blocker
from lightning_cnnviz.gradcam.shortcut import on_object_findings, on_object_text

__all__ = ["ShortcutChecks"]

_SHORTCUT_CHECKS = (
    "CAM on the object",
    "shortcut train vs val",
    "shortcut on both splits",
    "CAM fixed on one place",
)
# Causes after which a CAM off the object is their consequence: no shortcut finding then.
_NOT_A_SHORTCUT = frozenset({"divergence", "bn_mismatch", "not_learning"})


class ShortcutChecks:
    """The shortcut checks on one log's CAM metrics (a part of ``GradCAMMonitor``).

    Uses the monitor's ``foreground_threshold``, ``selected``, ``dense_output``, ``tag``,
    ``sink``, ``_trainer_ref``, ``_probes`` and the state it keeps: ``_probe_acc``,
    ``_val_acc``, ``_probe_commonest``, ``_classes``, ``_layouts``, ``_spot``, ``_on_object``,
    ``_fixed``, ``_ran``.
    """

    def _judge(self, trainer: Trainer, scalars: dict[str, float]) -> None:
        """Run the shortcut checks on this log's scalars; record those that cannot run."""
        if why := self._unjudgeable():
            for check in _SHORTCUT_CHECKS:
                self._record(check, False, why)
            return
        on_object = [
            scalars.get(
                self.tag(split, "on_object_hirescam"), scalars.get(self.tag(split, "on_object"))
            )
            for split in ("train", "val")
        ]
        areas = tuple(scalars.get(self.tag(split, "object_share")) for split in ("train", "val"))
        cells, hw = self._object_cells(areas)
        # a foreground mask over most of the image leaves no object to tell from the rest, and
        # a map of fewer than 4 cells a side no place for it
        masked = area_blocker(areas, hw=hw)
        probe = self._probes.get("train")
        dims = probe.images.dim() - 2 if probe is not None else 2
        if dims != 2:  # no object mask outside pictures; the CAMs themselves are drawn
            missing = ("the probes are " + ("signals (N, C, L)" if dims == 1 else f"{dims}-D "
                       "volumes") + ": the object checks read 2-D images")  # fmt: skip
        elif self.foreground_threshold is None:
            missing = "needs `foreground_threshold` (on_object)"
        else:
            missing = ("no CAM mass to place: the CAMs were zero on every probe image (no "
                       "gradient reached the layer), or the probes are not images")  # fmt: skip
        self._record("CAM on the object", on_object[0] is not None and not masked,
                     masked or missing)  # fmt: skip
        both = f"{missing}, on training and validation images"
        if not has_val_data(trainer):
            both = no_val_why(trainer)
        self._record("shortcut train vs val", None not in on_object and not masked,
                     masked or both)  # fmt: skip
        without = (scalars.get(self.tag("train", "right_without_object")), self._probe_classes())
        removal = area_blocker(areas, both=True) if None not in areas else ""  # reads no map
        if not removal and without[1] is not None and without[1] < 3:
            removal = (  # a background read as one class is half of two classes' images right
                f"the training probe holds images of {without[1]} class(es) only: too few to "
                "tell a cue from chance"
            )
        self._record("class kept without the object", without[0] is not None and not removal,
                     removal or missing)  # fmt: skip
        self._check_on_object(trainer, *on_object, areas=areas, accuracy=self._probe_acc,
                              cells=cells, hw=hw, without=without)  # fmt: skip
        self._check_fixed(trainer, scalars)

    def _probe_classes(self) -> int | None:
        """The classes the training probe holds (no more than the logits' width).

        Chance for ``right_without_object`` is the probe's own: a probe shrunk to 4 images
        of 2 classes (images at their own sizes, setups hunt 60) was judged against 1/4 and
        a model at 25% on images without an object told "reads the class from outside".
        """
        probe = self._probes.get("train")
        if probe is None or probe.labels is None or not self._classes:
            return self._classes
        return min(self._classes, len(probe.labels.unique()))

    def _unjudgeable(self) -> str:
        """Why no shortcut can be judged on this model's outputs ("": it can)."""
        if self.dense_output:  # the background class's CAM lies off the object by design
            return (
                "per-pixel outputs (a segmentation's class maps, or an image): a class's CAM "
                "is that class's region"
            )
        probe = self._probes.get("train")
        labels = probe.labels if probe is not None else None
        if self._probe_acc is None and labels is not None and self._classes:
            return (
                f"the training probe's labels run to {int(labels.max())} and the model gives "
                f"{self._classes} output(s): they are no indices of its outputs (a discriminator's "
                "one logit?), so right and wrong cannot be told"
            )
        if self._probe_acc is None:  # multi-label, regression, unreadable labels
            target = probe.target if probe is not None else ""
            what = f" (its targets are {target})" if target else ""
            return (
                f"needs class labels on the training probe{what}: without them a model that "
                "has learnt nothing (its CAM anywhere) cannot be told from one using a cue"
            )
        return ""

    def _object_cells(
        self, areas: tuple[float | None, ...]
    ) -> tuple[float | None, tuple[int, int] | None]:
        """How many cells of the deepest layer's map the object covers, and the map's size.

        The both-splits shortcut rule compares ``on_object`` with the object's area share,
        which means nothing on a map whose cells are as large as the object, or when the
        "object" is most of the image (``area_blocker``): the summary then lists that check
        among those that did not run, with why (recorded here). The other on-object rules
        need a map of ``MIN_MAP_SIDE`` cells a side.
        """
        layout = (self._layouts or {}).get(list(self.selected)[-1]) if self.selected else None
        if None in areas or not areas:
            return None, None
        cells, hw = None, None
        if layout is not None:
            hw, area = layout.hw, min(a for a in areas if a is not None)
            cells = area * hw[0] * hw[1]
        why = area_blocker(areas, cells, hw, both=True)
        self._record("shortcut on both splits", not why, why)
        return cells, hw

    def _record(self, check: str, ran: bool, why: str) -> None:
        """Say in the run's record whether ``check`` ran (once it has, it stays so)."""
        self._ran[check] = self._ran.get(check, False) or ran
        if self._trainer_ref is not None:
            ran = self._ran[check]
            record_check(self._trainer_ref, type(self).__name__, check, ran, "" if ran else why)

    def _check_on_object(
        self,
        trainer: Trainer,
        value: float | None,
        val: float | None = None,
        areas: tuple[float | None, float | None] = (None, None),
        accuracy: float | None = None,
        cells: float | None = None,
        hw: tuple[int, int] | None = None,
        without: tuple[float | None, int | None] = (None, None),
    ) -> None:
        if any(f.kind in _NOT_A_SHORTCUT for f in problems(findings_of(trainer))):
            return  # where the CAM falls then is a consequence of that cause, not a shortcut
        self._after_divergence(trainer)
        found = on_object_findings(self._on_object, value, val, areas, accuracy, cells, hw,
                                   without, val_accuracy=self._val_acc,
                                   commonest=self._probe_commonest)  # fmt: skip
        self._emit(trainer, found)

    def _check_fixed(self, trainer: Trainer, scalars: dict[str, float]) -> None:
        """The fixed-spot shortcut rule (``gradcam/fixed_spot.py``) on this log's agreements."""
        hw, where = self._spot.get("train", (None, ""))
        self._record("CAM fixed on one place", not fixed_blocker(hw), fixed_blocker(hw))
        agree = {split: (scalars.get(self.tag(split, "cam_agreement")),
                         scalars.get(self.tag(split, "content_agreement")))
                 for split in ("train", "val")}  # fmt: skip
        train, val = (pair if None not in pair else None for pair in agree.values())
        earlier = findings_of(trainer)
        if any(f.kind in _NOT_A_SHORTCUT for f in problems(earlier)):
            return
        self._after_divergence(trainer)
        found = fixed_findings(
            self._fixed,
            train,
            val,
            self._probe_acc,
            where,
            self._classes,  # type: ignore[arg-type]
            self._probe_commonest,
        )
        if not any(f.kind == "cam_shortcut" for f in earlier):  # one shortcut, told once
            self._emit(trainer, found)

    def _after_divergence(self, trainer: Trainer) -> None:
        """Start the rules afresh after a divergence (told, or recovered from since).

        The CAMs logged before it are another network's: held out (hunt 22), a loss spike
        that took a digit net from 84% to 30% val, recovered to 80%, left its CAM at 0.19
        on the digits against 0.42 at the first log, and `cam_off_object` outlived the
        divergence as the run's one problem.
        """
        told = [f.step for f in findings_of(trainer) if f.kind == "divergence"]
        if told and self._on_object.get("diverged_at") != told[-1]:
            self._on_object.clear()
            self._fixed.clear()
            self._on_object["diverged_at"] = told[-1]

    def _emit(self, trainer: Trainer, found: list[tuple[str, str, dict[str, Any]]]) -> None:
        """Warn, write ``gradcam/diagnosis`` and report each ``(kind, message, figures)``.

        A finding whose ``figures`` say ``back`` turns the standing one of its kind into a
        note (the CAM came back: no shortcut stands), told without a warning.
        """
        step, epoch = trainer.global_step, trainer.current_epoch
        for kind, message, figures in found:
            if figures.get("back"):
                standing = [f for f in problems(findings_of(trainer)) if f.kind == kind]
                if standing:
                    text = f"{message} (told at step {standing[-1].step}); a note now"
                    note = Finding(self.section, kind, step, epoch, text, figures, "note")
                    replace(trainer, standing[-1], note)
                continue
            say(f"GradCAMMonitor: {message}. See `{self.tag('diagnosis')}`.")
            if self._sink is not None:
                self.sink.text(self.tag("diagnosis"), on_object_text(message, step, epoch), step)
            report(trainer, Finding(self.section, kind, step, epoch, message, figures))
