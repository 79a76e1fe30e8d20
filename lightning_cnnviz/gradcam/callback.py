"""GradCAMMonitor: Captum Grad-CAM on fixed probe images during training, safely."""

from __future__ import annotations

from typing import Any, Literal

from lightning.pytorch import LightningModule, Trainer
from torch import Tensor, nn
from typing_extensions import override

from lightning_cnnviz.core import cam as C
from lightning_cnnviz.core import rendering as R
from lightning_cnnviz.core.cam_calls import parallel_calls
from lightning_cnnviz.core.checks import check_choice, check_int, check_number
from lightning_cnnviz.core.inputs import to_model
from lightning_cnnviz.core.labels import caption
from lightning_cnnviz.core.monitor import Monitor
from lightning_cnnviz.core.outputs import NotApplicable
from lightning_cnnviz.core.probe import Probe
from lightning_cnnviz.core.run_datasets import find_dataset, has_val_data, no_val_why
from lightning_cnnviz.core.say import say
from lightning_cnnviz.core.selection import unwrap_model
from lightning_cnnviz.core.target_layer import auto_cam_layer, trace_calls
from lightning_cnnviz.core.tokens import Layout
from lightning_cnnviz.core.trace_images import trace_images
from lightning_cnnviz.gradcam.draw import MAX_TILES, cam_grid
from lightning_cnnviz.gradcam.judging import ShortcutChecks
from lightning_cnnviz.gradcam.metrics import means_to_host
from lightning_cnnviz.gradcam.misclassified import Untold, draw_pool, misclassified_probe
from lightning_cnnviz.gradcam.rows import CamRows, Row
from lightning_cnnviz.gradcam.saliency import SALIENCY_METHODS


class GradCAMMonitor(ShortcutChecks, CamRows, Monitor, section="gradcam"):
    """Grad-CAM overlays of train, val and misclassified samples, and CAM metrics over time.

    Runs at train batch end or train epoch end, never inside validation, in probe
    mode (eval, out of ``inference_mode``, float32); gradients w.r.t. activations
    only. Writes ``gradcam/{train,val,misclassified}`` (one row per layer) and
    ``gradcam/{split}/{concentration,on_object,drift}`` (and ``on_object_hirescam``,
    what the shortcut rules read: a cue read by its position shows in HiResCAM only)
    and ``cam_agreement`` / ``content_agreement`` (how alike the probe's CAMs are across
    images and classes, and how alike the images are). Reports ``cam_off_object`` when
    the train on-object share falls markedly, and ``cam_shortcut`` when it stays below
    val's (a cue only training images carry), far below the object's area share on both
    splits (a cue they all carry), or when the CAMs sit on one off-centre place whatever
    the image (a cue at a fixed place; needs no object mask: ``gradcam/fixed_spot.py``); silent
    while the eval-mode probe is mostly wrong or after a divergence, BatchNorm mismatch
    or not-learning finding (rules: ``gradcam/shortcut.py``, ``docs/diagnosis_training.md``).

    Args:
        layers: ``"auto"`` (the last conv block's activation or pooling output) or any selection.
        method: ``"gradcam"`` (``LayerGradCam``), ``"hirescam"`` (gradient x activation
            per position: shows cues a linear head reads by position, which Grad-CAM
            cannot) or ``"guided_gradcam"``.
        target: ``"pred"``, ``"true"`` or a class index (int or digit string). ``"true"``
            needs one class label per image: on masks or unlabelled items (an autoencoder,
            SimCLR views) the CAMs are of ``"pred"``'s class, said once and in the summary. For a
            segmentation net ((N, classes, H, W) logits) the CAM's target is a class's
            score summed over the pixels predicted as that class: ``"pred"`` is the class
            predicted at most pixels, and one more row per class predicted in the probe
            (up to 4) shows where each comes from. Signals (N, C, L) show the CAM over
            time under each channel's strip, volumes (N, C, D, H, W) on 4 depth slices.
        misclassified: search ``misclassified_pool`` val samples (drawn once, by index;
            one forward pass per log) for ``gradcam/misclassified``; ``False``: no search, no image.
            Only where the labels index the outputs (a one-logit head's 0/1 by its sign);
            elsewhere (a discriminator on digits 0-9) no image, said once and in the summary.
        misclassified_pool: how many val samples the search looks at.
        alpha: heatmap opacity over the image. cmap: a colormap of ``rendering.CMAPS``.
        shared_scale: one colour scale per grid instead of one per image.
        foreground_threshold: how far above the background a pixel's de-normalised
            brightness must stand to be the object, as a share of the way up to the image's
            bright level (``on_object``; small isolated bright blobs are not, see
            ``gradcam.objects.foreground``); ``None`` turns ``on_object`` off.
        saliency: extra rows of input-gradient maps, opt-in: any of ``"saliency"``
            (Captum ``Saliency``) and ``"integrated_gradients"`` (from a black image).
        smooth: wrap the saliency methods in Captum's ``NoiseTunnel`` (SmoothGrad).
        **kwargs: the shared arguments of ``Monitor`` (schedule, ``num_samples``, ``tag_prefix``,
            ``strict``, ``seed``, ``budget``, ``output_key``, ``label_key``).

    Example::

        >>> from lightning_cnnviz import GradCAMMonitor
        >>> GradCAMMonitor(every_n_steps=100, target="true").target
        'true'
    """

    auto_description = (
        "it looks for the last layer whose output is a map shaped like the input, or a "
        "transformer's last token grid"
    )

    needs_call_sites = False
    maps_on_input = True
    needs_gradients = True

    def __init__(
        self,
        layers: str | list[str] = "auto",
        method: Literal["gradcam", "hirescam", "guided_gradcam"] = "gradcam",
        target: str | int = "pred",
        misclassified: bool = True,
        misclassified_pool: int = 512,
        alpha: float = 0.5,
        cmap: str = "inferno",
        shared_scale: bool = False,
        foreground_threshold: float | None = 0.2,
        saliency: list[str] | None = None,
        smooth: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(layers, **kwargs)
        check_choice("method", method, C.CAM_METHODS)
        target = int(target) if isinstance(target, str) and target.isdigit() else target
        if target not in ("pred", "true") and (type(target) is not int or target < 0):
            raise ValueError(f"`target` must be 'pred', 'true' or a class index, got {target!r}")
        check_choice("misclassified", misclassified, (True, False))
        check_int("misclassified_pool", misclassified_pool)
        check_number("alpha", alpha, low=0.0, high=1.0)
        check_choice("cmap", cmap, R.CMAPS)
        if foreground_threshold is not None:
            check_number("foreground_threshold", foreground_threshold, low=0.0, high=1.0)
        for name in saliency or []:
            check_choice("saliency", name, SALIENCY_METHODS)
        self.saliency, self.smooth = list(saliency or []), bool(smooth)
        self.method, self.target = method, target
        self.misclassified, self.misclassified_pool = misclassified, misclassified_pool
        self.alpha, self.cmap = alpha, cmap
        self.shared_scale, self.foreground_threshold = shared_scale, foreground_threshold
        self._previous: dict[str, Tensor] = {}  # last CAM per split/layer (drift), checkpointed
        self._on_object: dict[str, Any] = {}  # first / max / low of train on_object (findings)
        self._probe_acc: float | None = None  # the train probe's eval-mode accuracy (findings)
        self._probe_commonest: float | None = None  # ... and its commonest class's share
        self._val_acc: float | None = None  # the val probe's (a cue validation images lack)
        self._classes: int | None = None  # the logits' width (chance for `right_without_object`)
        self._ran: dict[str, bool] = {}  # which shortcut checks looked at the run (summary)
        self._pool: Probe | None = None  # val samples searched for misclassified ones
        self._layouts: dict[str, Layout | None] | None = None  # token layers (transformers)
        self._masks: dict[str, tuple[Tensor, Tensor]] = {}  # split -> (images, foreground)
        self._spot: dict[str, tuple[tuple[int, int] | None, str]] = {}  # split -> (map hw, region)
        self._fixed: dict[str, Any] = {}  # the fixed-spot rule's state (findings), checkpointed
        self._screened = False  # whether this fit's selection was checked for 1x1 maps
        self._untold = ""  # why right and wrong cannot be told (no misclassified search)

    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._trainer, self._pool, self._layouts = trainer, None, None  # auto_layers needs data
        self._screened, self._untold = False, ""  # 1x1 maps: left out at the first event
        super().setup(trainer, pl_module, stage)

    @override
    def auto_layers(self, model: nn.Module, available: dict[str, nn.Module]) -> list[str]:
        """The last conv block's output, found by a shape-tracing probe pass on one val sample."""
        x = self.probe_input(self._trainer, model, "val")
        name, note = auto_cam_layer(model, available, x, self.logits_key(self._trainer, model))
        if note and name is None:  # the reason none can be watched, not "no layer found"
            self.step_aside(note)
        elif note:
            say(f"GradCAMMonitor(layers='auto'): {note}")
        return [name] if name else []

    @override
    def layers_found(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Say once where a selected layer runs on parallel copies in one forward pass."""
        model = unwrap_model(pl_module)
        try:
            x = self.probe_input(trainer, pl_module)[:1]
            passed = {n: parallel_calls(model, m, x) for n, m in self.selected.items()}
        except Exception:  # no probe yet, or a pass the first event says why it fails
            return
        for name, copies in passed.items():
            if copies:
                self.warn_once(
                    f"parallel_{name}",
                    f"`{name}` runs on {copies + 1} parallel copies of the images in one "
                    "forward pass (test-time augmentation, a branch shared by two inputs): "
                    "its CAM is of the first copy, laid over the images as given; where "
                    "`forward` transforms that copy (rotates, crops it), so is the map.",
                )

    def _samples(self, trainer: Trainer, model: nn.Module, split: str) -> Probe | None:
        if split != "misclassified":
            return self.probe(trainer, split)
        if self.dense_output or self._untold:  # per-pixel, or labels no output index: none wrong
            return None
        if self._pool is None:
            data = find_dataset(trainer, "val")
            key = self.probe_label_key(data)
            self._pool = draw_pool(data, self.misclassified_pool, self.seed, key)
        try:
            return misclassified_probe(model, self._pool, self.num_samples, self._logits_key)
        except Untold as err:  # setups hunt 83: every label but 0 was "misclassified"
            self._untold = str(err)
            self._record("misclassified samples", False, self._untold)
            self.warn_once("untold", f"draws no `gradcam/misclassified` panel: {err}")
            return None

    @override
    def log_event(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Grad-CAM of every split and layer: metrics and findings here, grids drawn off-thread."""
        model, values, panels = unwrap_model(pl_module), {}, []
        self._probe_acc = self._val_acc = self._probe_commonest = None
        self.logits_key(trainer, model)
        if self.scores_misfit:  # before any pass: its error would name another cause
            raise NotApplicable(self.scores_misfit)
        splits = ("train", "val", "misclassified")[: 3 if self.misclassified else 2]
        if not has_val_data(trainer):  # never training images under the names val/misclassified
            splits = ("train",)
            self.warn_once("no_val", f"{no_val_why(trainer)}: only `gradcam/train` is drawn "
                           "(no `val` or `misclassified` panels)")  # fmt: skip
        self._leave_out_flat(trainer, model)
        for split in splits:
            with self.phase("capture"):
                probe = self._samples(trainer, model, split)
            if probe is not None:
                made = [self._map_row(trainer, model, probe, split, n, values)
                        for n in list(self.selected)]  # fmt: skip
                rows = [row for row in made if row is not None]
                rows += self._class_rows(trainer, model, probe, split)
                panels.append((split, rows + self._saliency_rows(trainer, model, probe)))
        with self.phase("write"):
            scalars = means_to_host(values)
            self.sink.scalars(scalars, trainer.global_step)
            self.in_background(lambda step=trainer.global_step: self._draw(panels, step))
        self._judge(trainer, scalars)

    def _map_row(self, trainer: Trainer, model: nn.Module, probe: Probe, split: str, name: str,
                 values: dict[str, Tensor]) -> Row | None:  # fmt: skip
        """``_row``, or ``None`` where the layer gives no map: left out, said once.

        A glob (``layers="*"``) or a type name also matches pooled and dense layers; the
        monitor steps aside only when no selected layer gives a map. A named layer whose
        map is 1x1 (setups hunt 82: one flat colour per tile, `on_object` 0.939 at every
        log) is left out too, before any of its scalars is written, and listed in the
        end-of-fit summary among the checks that did not run.
        """
        try:
            return self._row(trainer, model, probe, split, name, values)
        except C.NoMapError as err:
            self._leave_out(name, err)
            return None

    def _leave_out(self, name: str, err: C.NoMapError) -> None:
        """Drop ``name`` from the selection, said once; step aside where none is left."""
        del self.selected[name]
        flat = isinstance(err, C.FlatMapError)
        if not self.selected:
            advice = ": name conv layers with `layers=`" if err.other_layer else ""
            raise NotApplicable(f"`{name}`: {err}" if flat else f"{err}{advice}") from err
        if flat:  # the summary's "did not run": its CAM, scores and checks
            self._record(f"Grad-CAM of `{name}`", False, str(err).split(", so")[0])
        self.warn_once(f"no_map_{name}", f"leaves out `{name}`: {err}.")

    def _leave_out_flat(self, trainer: Trainer, model: nn.Module) -> None:
        """Before the fit's first row: leave out the selected layers whose map is 1x1.

        Read from one traced pass on the first train probe image(s), so that the deepest
        layer left gets the plain tags and the shortcut rules from the first log on (the
        rows' own check, ``core.cam.flat_map``, would find it only after the layers above).
        A token layer is checked on its grid when its CAM is taken.
        """
        if self._screened or not self.selected:
            return
        self._screened = True
        try:
            x = to_model(self.probe(trainer, "train").images, model)
            calls, _ = trace_calls(model, self.selected, x[: trace_images(model)],
                                   self._logits_key)  # fmt: skip
        except Exception:  # a pass the rows say why it fails (integer ids, no probe)
            return
        shapes = {call.name: call.shape for call in calls if len(call.shape) == x.dim()}
        for name, shape in shapes.items():
            try:
                C.flat_map(shape)
            except C.FlatMapError as err:
                self._leave_out(name, err)

    def _draw(self, panels: list[tuple[str, list[Row]]], step: int) -> None:
        """On the sink's thread: one image per split, a captioned grid per row."""
        for split, rows in panels:
            grids = []
            for image01, heat, logits, labels, title in rows:
                n = MAX_TILES  # a probe of 1,000 images drew a 498 x 12,674 grid
                grid, _ = cam_grid(image01[:n], heat[:n], logits[:n],
                                   None if labels is None else labels[:n], cmap=self.cmap,
                                   alpha=self.alpha, shared_scale=self.shared_scale)  # fmt: skip
                if len(image01) > n:
                    title = f"{title or split}: the first {n} of {len(image01)} probe images"
                grids.append(grid if title is None else caption(grid, title))
            self.sink.image(self.tag(split), R.vstack(grids, gap=4), step)

    @override
    def extra_state(self) -> dict[str, Any]:
        return {"previous": dict(self._previous), "on_object": dict(self._on_object),
                "ran": dict(self._ran), "fixed": dict(self._fixed)}  # fmt: skip

    @override
    def load_extra_state(self, state: dict[str, Any]) -> None:
        self._previous = dict(state.get("previous", {}))
        self._on_object = dict(state.get("on_object", self._on_object))
        self._ran = dict(state.get("ran", self._ran))
        self._fixed = dict(state.get("fixed", self._fixed))
