import collections
import dataclasses

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from tests.monitors import (
    ALL_MONITORS,
    TinyCNN,
    assert_every_monitor_wrote,
    digits,
    failures,
    fit,
    make_monitor,
    written_tags,
)


class Items(Dataset):
    """``data``'s items as ``shape(i, x, y)`` gives them (default: ``{"image": x, "label": y}``)."""

    def __init__(self, data, shape=lambda i, x, y: {"image": x, "label": y}) -> None:
        self.data, self.shape = data, shape

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i):
        return self.shape(i, *self.data[i])


def probe_of(monitors, name: str):
    """The val probe the monitor of class ``name`` drew."""
    return next(m for m in monitors if type(m).__name__ == name)._probes["val"]


def numpy_named(i, x, y):
    """``(name, NumPy image, NumPy label)``, as hand-written and albumentations pipelines give
    them; the default collate makes the batch tensors."""
    return f"{i:04d}.png", x.numpy(), y.numpy()


class ItemForward(TinyCNN):
    """A model whose ``forward`` takes the batch dict, as some codebases write it."""

    def forward(self, batch):
        return super().forward(batch["image"])

    def _step(self, batch, stage):
        return super()._step((batch, batch["label"]), stage)


def _run(tmp_path, monitors):
    torch.manual_seed(0)
    data = (DataLoader(Items(digits(32, seed=1)), 8), DataLoader(Items(digits(16, seed=2)), 8))
    return fit(tmp_path, monitors, model=ItemForward(), data=data)


def test_model_io_items_forward_taking_the_batch_dict_gets_the_images_in_one(tmp_path):
    # held out: `forward(self, batch)` reading batch["image"] made Activation, FeatureMap,
    # GradCAM and Overfitting fail ("too many indices for tensor of dimension 4")
    monitors = [make_monitor(name) for name in ALL_MONITORS]
    _, model, messages = _run(tmp_path / "on", monitors)
    said = [m for m in messages if "forward takes the data item" in m]
    assert len(said) == 1 and "{'image': images}" in said[0]
    assert_every_monitor_wrote(tmp_path / "on", monitors, messages)
    _, bare, _ = _run(tmp_path / "off", [])
    for a, b in zip(model.state_dict().values(), bare.state_dict().values(), strict=True):
        assert torch.equal(a, b)


class NamedBatches(TinyCNN):
    def _step(self, batch, stage):
        _, x, y = batch
        return super()._step((x, y), stage)


def test_model_io_items_numpy_items_named_first_are_read_as_the_loader_collates_them(tmp_path):
    # held out (setups hunt 18): NumPy items, or an item's file name first, made Activation,
    # FeatureMap, GradCAM and Overfitting fail ("cannot find the input tensor")
    torch.manual_seed(0)
    data = tuple(
        DataLoader(Items(digits(n, seed=s), numpy_named), 8) for n, s in ((32, 1), (16, 2))
    )
    monitors = [make_monitor(name) for name in ALL_MONITORS]
    _, _, messages = fit(tmp_path, monitors, model=NamedBatches(), data=data)
    assert_every_monitor_wrote(tmp_path, monitors, messages)


def pil_item(i, x, y):
    """``(PIL image, int)``: a dataset without ``ToTensor``, its loader converts the batch."""
    from PIL import Image

    pixels = (x[0].clamp(-1, 2) + 1) / 3 * 255  # one channel, 0..255
    return Image.fromarray(pixels.round().to(torch.uint8).numpy()), int(y)


def to_tensors(items):
    """The loader's ``collate_fn``: PIL images to one float batch, as ``ToTensor`` would."""
    from torchvision.transforms.functional import pil_to_tensor

    images = torch.stack([pil_to_tensor(image).float() / 255 for image, _ in items])
    return images * 3 - 1, torch.tensor([label for _, label in items])


def test_model_io_items_pil_items_a_collate_fn_converts_are_read_through_it(tmp_path):
    # held out (setups hunt 18): (PIL image, label) items that only the loader's collate_fn
    # turns into tensors made Activation, FeatureMap, GradCAM and Overfitting fail
    torch.manual_seed(0)
    data = tuple(
        DataLoader(Items(digits(n, seed=s), pil_item), 8, collate_fn=to_tensors)
        for n, s in ((32, 1), (16, 2))
    )
    monitors = [make_monitor(name) for name in ALL_MONITORS]
    _, model, messages = fit(tmp_path / "on", monitors, data=data)
    assert_every_monitor_wrote(tmp_path / "on", monitors, messages)
    probe = probe_of(monitors, "FeatureMapMonitor")
    first = to_tensors([pil_item(0, *digits(16, seed=2)[probe.indices[0]])])[0][0]
    assert torch.equal(probe.images[0], first)  # the image as the model gets it
    torch.manual_seed(0)
    _, bare, _ = fit(tmp_path / "off", [], data=data)
    for a, b in zip(model.state_dict().values(), bare.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def hwc_item(i, x, y):
    """``(HWC uint8 array, int)``, as cv2 and albumentations pipelines leave them."""
    pixels = (x.clamp(-1, 2) + 1) / 3 * 255
    return pixels.round().to(torch.uint8).permute(1, 2, 0).numpy(), int(y)


def hwc_to_batch(items):
    """The loader's ``collate_fn``: HWC uint8 arrays to one CHW float batch."""
    images = torch.stack([torch.from_numpy(a).permute(2, 0, 1).float() / 255 for a, _ in items])
    return images * 3 - 1, torch.tensor([label for _, label in items])


def test_model_io_items_hwc_arrays_a_collate_fn_permutes_are_read_through_it(tmp_path):
    # setups hunt 20: the probes read the raw (16, 16, 1) arrays as CHW, and Activation,
    # FeatureMap, GradCAM and Overfitting failed ("expected ... 1 channels, but got 16")
    data = tuple(
        DataLoader(Items(digits(n, seed=s), hwc_item), 8, collate_fn=hwc_to_batch)
        for n, s in ((32, 1), (16, 2))
    )
    monitors = [make_monitor(name) for name in ALL_MONITORS]
    _, _, messages = fit(tmp_path, monitors, data=data)
    assert_every_monitor_wrote(tmp_path, monitors, messages)
    assert probe_of(monitors, "FeatureMapMonitor").images.shape[1:] == (1, 16, 16)


class FloatTargets(TinyCNN):
    """One logit, ``BCEWithLogitsLoss`` on (B, 1) float targets 0. / 1. (binary sets' way)."""

    def __init__(self) -> None:
        super().__init__(classes=1)

    def _step(self, batch, stage):
        x, y = batch
        logits = self(x)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y)
        self.log(f"{stage}/loss", loss)
        self.log(f"{stage}/acc", ((logits > 0).float() == y).float().mean())
        return loss


def test_model_io_items_float_binary_targets_are_two_classes_not_regression(tmp_path):
    # setups hunt 19: (B, 1) float 0/1 targets were "real numbers (regression)": the
    # class-based checks and Grad-CAM's per-class reads were left out
    def binary(i, x, y):
        return x, (y % 2).float().view(1)

    torch.manual_seed(0)
    data = tuple(DataLoader(Items(digits(n, seed=s), binary), 8) for n, s in ((32, 1), (16, 2)))
    monitors = [make_monitor(name) for name in ALL_MONITORS]
    _, _, messages = fit(tmp_path, monitors, model=FloatTargets(), data=data)
    assert [m for m in messages if "one logit per sample and the labels are 0/1" in m]
    assert not [m for m in messages if "regression" in m]
    probe = probe_of(monitors, "GradCAMMonitor")
    assert probe.labels is not None and set(probe.labels.tolist()) == {0, 1}
    tags = written_tags(tmp_path)
    for monitor in monitors:
        name = type(monitor).__name__
        assert not failures(messages, name) and monitor.events > 0, name
    assert {"gradcam/val", "gradcam/train"} <= tags["images"]


class IndexFirst(TinyCNN):
    """Items ``(index, image, label)``, as per-sample loss tracking keeps them."""

    def _step(self, batch, stage):
        return super()._step(batch[1:], stage)


def test_model_io_items_an_index_first_is_not_taken_for_the_image(tmp_path):
    # setups hunt 20: the 0-d index was read as the probe image ("Input type (long int)
    # and bias type (float) should be the same") by Activation, FeatureMap, GradCAM, Overfitting
    def indexed(data):
        return DataLoader(Items(data, lambda i, x, y: (torch.tensor(i), x, y)), batch_size=8)

    monitors = [make_monitor(name) for name in ALL_MONITORS]
    data = (indexed(digits(32, seed=1)), indexed(digits(16, seed=2)))
    _, _, messages = fit(tmp_path, monitors, model=IndexFirst(), data=data)
    assert_every_monitor_wrote(tmp_path, monitors, messages)
    assert probe_of(monitors, "GradCAMMonitor").labels is not None


@dataclasses.dataclass
class Item:
    """A dataset item as a dataclass (its batch collated into one of the same class)."""

    image: torch.Tensor
    label: torch.Tensor


def collate_items(items):
    return Item(torch.stack([i.image for i in items]), torch.stack([i.label for i in items]))


class ItemSteps(TinyCNN):
    """Steps that read a named batch by its fields."""

    def _step(self, batch, stage):
        return super()._step((batch.image, batch.label), stage)


Sample = collections.namedtuple("Sample", "image mask label")


@pytest.mark.parametrize("form", ["dataclass", "namedtuple"])
def test_model_io_items_named_items_are_read_by_their_fields(tmp_path, form):
    # setups hunt 71: dataclass items stepped Activation, FeatureMap, GradCAM and Overfitting
    # aside ("cannot find the input tensor"); a namedtuple (image, mask, label) had its mask
    # read as the target and every label check skipped
    def loader(data):
        if form == "dataclass":
            return DataLoader(Items(data, lambda i, x, y: Item(x, torch.as_tensor(y))), 8,
                              collate_fn=collate_items)  # fmt: skip
        return DataLoader(Items(data, lambda i, x, y: Sample(x, (x[0] > 0.5).float(), y)), 8)

    monitors = [make_monitor(name) for name in ALL_MONITORS]
    data = (loader(digits(32, seed=1)), loader(digits(16, seed=2)))
    _, _, messages = fit(tmp_path, monitors, model=ItemSteps(), data=data)
    assert_every_monitor_wrote(tmp_path, monitors, messages)
    assert not [m for m in messages if "label_key" in m or "cannot find" in m], messages
    probe = probe_of(monitors, "GradCAMMonitor")
    assert probe.labels is not None and probe.images.shape[1:] == (1, 16, 16)
    assert set(probe.labels.tolist()) == {int(y) for _, y in digits(16, seed=2)}


@dataclasses.dataclass
class Halved:
    """A batch that halves its images as it is made (a `/ 255` in `__post_init__`)."""

    image: torch.Tensor
    label: torch.Tensor

    def __post_init__(self):
        self.image = self.image / 2


def test_model_io_items_a_batch_converting_as_it_is_made_is_converted_once(tmp_path):
    # setups hunt 72: each probe row of such a batch was made anew, its `__post_init__` run
    # again: the probes divided twice, told "the inputs barely vary: scaled twice"
    def loader(data):
        collate = lambda b: Halved(torch.stack([x for x, _ in b]), torch.stack([y for _, y in b]))  # noqa: E731
        return DataLoader(Items(data, lambda i, x, y: (x, y)), 8, collate_fn=collate)

    val = digits(16, seed=2)
    monitors = [make_monitor("FeatureMapMonitor")]
    fit(tmp_path, monitors, model=ItemSteps(), data=(loader(digits(32, seed=1)), loader(val)))
    probe = probe_of(monitors, "FeatureMapMonitor")
    halved = torch.stack([val[int(i)][0] for i in probe.indices]) / 2
    assert torch.equal(probe.images, halved)


class MaskFirst(TinyCNN):
    """Items ``{"id", "mask", "pixels", "label"}``: the image under a key of its own."""

    def _step(self, batch, stage):
        return super()._step((batch["pixels"], batch["label"]), stage)


def test_model_io_items_a_mask_before_an_image_under_its_own_key_is_not_the_image(tmp_path):
    # setups hunt 66: the first 2-D entry, the mask, was read as the image: a healthy run
    # told "only 34 different images" and `val_is_train`, its maps drawn on the masks
    def keyed(data):
        def item(i, x, y):
            return {"id": i, "mask": (x[0] > 0.5).float(), "pixels": x, "label": y}

        return DataLoader(Items(data, item), batch_size=8)

    monitors = [make_monitor(name) for name in ALL_MONITORS]
    images = digits(32, seed=1)
    _, _, messages = fit(tmp_path, monitors, model=MaskFirst(), data=(keyed(images),
                         keyed(digits(16, seed=2))))  # fmt: skip
    assert_every_monitor_wrote(tmp_path, monitors, messages)
    probe = probe_of(monitors, "FeatureMapMonitor")
    assert probe.images.shape[1:] == images[0][0].shape  # (1, 16, 16): the pixels
    assert probe.labels is not None


class RgbForward(TinyCNN):
    """``forward`` takes the batch dict and reads its ``"rgb"`` entry (a depth map beside it)."""

    def __init__(self) -> None:
        super().__init__(channels=3)

    def forward(self, batch):
        return super().forward(batch["rgb"])

    def _step(self, batch, stage):
        return super()._step((batch, batch["label"]), stage)


def test_model_io_items_forward_taking_a_dict_under_its_own_key_gets_it_beside_a_depth_map(
    tmp_path,
):
    # setups hunt 67: `{"depth", "rgb", "label"}` items: the depth map (first, as many
    # dimensions) was read as the image, and a `forward(batch)` reading `batch["rgb"]`
    # was never probed (the monitors stepped aside with a TypeError)
    def keyed(data):
        def item(i, x, y):
            return {"depth": x[:1] * 0.5, "rgb": x, "label": y}

        return DataLoader(Items(data, item), batch_size=8)

    monitors = [make_monitor(name) for name in ALL_MONITORS]
    images = digits(32, channels=3, seed=1)
    data = (keyed(images), keyed(digits(16, channels=3, seed=2)))
    _, _, messages = fit(tmp_path, monitors, model=RgbForward(), data=data)
    assert_every_monitor_wrote(tmp_path, monitors, messages)
    said = [m for m in messages if "forward takes the data item" in m]
    assert len(said) == 1 and "{'rgb': images}" in said[0]
    assert probe_of(monitors, "FeatureMapMonitor").images.shape[1:] == (3, 16, 16)


class HookNormalised(TinyCNN):
    """Normalises each batch in ``on_after_batch_transfer``, which the probes skip."""

    def on_after_batch_transfer(self, batch, dataloader_idx):
        x, y = batch
        return (x - 100) / 50, y


def test_model_io_items_batch_hooks_the_probes_skip_are_said_once(tmp_path):
    # setups hunt 20: a DataModule normalising in `on_before_batch_transfer` gave raw
    # probes, an "unnormalised inputs" note and statistics of inputs never trained on
    monitors = [make_monitor(name) for name in ("ActivationMonitor", "GradCAMMonitor")]
    _, _, messages = fit(tmp_path, monitors, model=HookNormalised())
    said = [m for m in messages if "without the run's `module.on_after_batch_transfer`" in m]
    assert len(said) == 1
    _, _, quiet = fit(tmp_path / "plain", [make_monitor("ActivationMonitor")])
    assert not [m for m in quiet if "batch_transfer" in m]


class Batches(Dataset):
    """A dataset whose items are whole batches, for a loader with ``batch_size=None``."""

    def __init__(self, data, per: int) -> None:
        self.x, self.y, self.per = *data.tensors, per

    def __len__(self) -> int:
        return (len(self.y) + self.per - 1) // self.per

    def __getitem__(self, i):
        rows = slice(i * self.per, (i + 1) * self.per)
        return self.x[rows], self.y[rows]


def test_model_io_items_a_loader_of_whole_batches_is_read_sample_by_sample(tmp_path):
    # setups hunt 19: DataLoader(batch_size=None) over a dataset that returns batches made
    # Activation, FeatureMap, GradCAM and Overfitting fail ("Expected 4D input ...")
    torch.manual_seed(0)
    data = (DataLoader(Batches(digits(32, seed=1), 8), batch_size=None),
            DataLoader(Batches(digits(20, seed=2), 8), batch_size=None))  # fmt: skip
    monitors = [make_monitor(name) for name in ALL_MONITORS]
    _, _, messages = fit(tmp_path, monitors, data=data)
    assert_every_monitor_wrote(tmp_path, monitors, messages)
    probe = probe_of(monitors, "GradCAMMonitor")
    assert probe.images.shape[1:] == (1, 16, 16) and max(probe.indices) < 20


def test_model_io_items_output_key_on_a_plain_tensor_output_is_said_once(tmp_path):
    # setups hunt 19: `output_key: logitz` on a model returning one tensor was ignored
    # without a word, with `strict` too
    monitor = make_monitor("GradCAMMonitor", output_key="logitz", strict=True)
    _, _, messages = fit(tmp_path, [monitor])
    said = [m for m in messages if "`output_key='logitz'` has nothing to pick" in m]
    assert len(said) == 1 and said[0].startswith("GradCAMMonitor: ")
    assert monitor.events > 0 and not monitor.disabled


class DictItems(TinyCNN):
    def _step(self, batch, stage):
        return super()._step((batch["image"], batch["label"]), stage)


class TargetDict(TinyCNN):
    """Items ``(image, {"cls": label, "weight": w})``, as multi-task pipelines keep them."""

    def _step(self, batch, stage):
        return super()._step((batch[0], batch[1]["cls"]), stage)


def test_model_io_items_label_key_said_where_it_misses_and_reaches_into_a_target_dict(tmp_path):
    # setups hunt 21: a wrong `label_key` lost the labels with no word of it, and
    # `label_key="cls"` did not reach into the items' target dict
    def shaped(data, shape):
        return DataLoader(Items(data, shape), batch_size=8)

    for name, key, shape, model in (
        ("wrong", "target", lambda i, x, y: {"image": x, "label": y}, DictItems),
        ("nested", "cls", lambda i, x, y: (x, {"cls": y, "weight": 1.0}), TargetDict),
    ):
        names = ("GradCAMMonitor", "OverfittingMonitor")
        monitors = [make_monitor(n, label_key=key) for n in names]
        data = (shaped(digits(32, seed=1), shape), shaped(digits(16, seed=2), shape))
        _, _, messages = fit(tmp_path / name, monitors, model=model(), data=data)
        said = [m for m in messages if f"`label_key={key!r}`" in m]
        if name == "wrong":
            (one,) = said
            assert "is no key of the data items (their keys: 'image', 'label')" in one
        else:
            assert not said
        for monitor in names:
            assert probe_of(monitors, monitor).labels is not None, (name, monitor)


def multi_task(i, x, y):
    """A multi-task item: the label a level down, ``{"image", "targets": {"parity", "digit"}}``."""
    return {"image": x, "targets": {"parity": y % 2, "digit": y}}


class MultiTask(TinyCNN):
    def _step(self, batch, stage):
        return super()._step((batch["image"], batch["targets"]["digit"]), stage)


def test_model_io_items_a_label_key_one_level_down_is_read(tmp_path):
    # setups hunt 26: neither `label_key="digit"` nor "targets.digit" was accepted, and 9
    # checks could never run ("the probes' targets are dict values")
    data = [digits(32, seed=1), digits(16, seed=2)]
    loaders = tuple(DataLoader(Items(d, multi_task), 8) for d in data)
    for key in ("digit", "targets.digit"):
        monitor = make_monitor("OverfittingMonitor", label_key=key)
        _, _, messages = fit(tmp_path / key, [monitor], model=MultiTask(), data=loaders)
        labels = probe_of([monitor], "OverfittingMonitor").labels
        assert labels is not None and torch.equal(labels.sort().values.unique(), torch.arange(4))
        assert not [m for m in messages if "label_key" in m and "no key" in m]


@dataclasses.dataclass
class Coded:
    """A dataset item whose label field has no usual name."""

    image: torch.Tensor
    cls: int


def test_model_io_items_a_named_items_label_under_its_own_name_is_guessed_and_said(tmp_path):
    # hunt 100: a dataclass item's label field `cls`: every label check skipped, and the
    # summary did not name `label_key`
    def loader(data):
        collate = lambda b: (torch.stack([i.image for i in b]), torch.tensor([i.cls for i in b]))  # noqa: E731
        return DataLoader(Items(data, lambda i, x, y: Coded(x, int(y))), 8, collate_fn=collate)

    monitors = [make_monitor("GradCAMMonitor")]
    _, _, messages = fit(
        tmp_path, monitors, data=(loader(digits(32, seed=1)), loader(digits(16, seed=2)))
    )
    said = [m for m in messages if "the data items are Coded with keys ['image', 'cls']" in m]
    assert len(said) == 1 and "Pass `label_key` to choose" in said[0], messages
    assert probe_of(monitors, "GradCAMMonitor").labels is not None
