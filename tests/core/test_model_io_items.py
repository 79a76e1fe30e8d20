import torch
from torch.utils.data import DataLoader, Dataset

from tests.monitors import (
    ALL_MONITORS,
    TinyCNN,
    digits,
    failures,
    fit,
    make_monitor,
    section,
    written_tags,
)


class Items(Dataset):
    """Dict items ``{"image": x, "label": y}``."""

    def __init__(self, data) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i):
        x, y = self.data[i]
        return {"image": x, "label": y}


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
    tags = written_tags(tmp_path / "on")
    written = {t for kind in ("images", "scalars") for t in tags[kind]}
    for monitor in monitors:
        name = type(monitor).__name__
        assert not failures(messages, name) and monitor.events > 0, name
        assert any(t.startswith(section(name) + "/") for t in written), name
    _, bare, _ = _run(tmp_path / "off", [])
    for a, b in zip(model.state_dict().values(), bare.state_dict().values(), strict=True):
        assert torch.equal(a, b)


class NumpyItems(Dataset):
    """``(name, NumPy image, NumPy label)`` items, as hand-written and albumentations
    pipelines give them; the default collate makes the batch tensors."""

    def __init__(self, data) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i):
        x, y = self.data[i]
        return f"{i:04d}.png", x.numpy(), y.numpy()


class NamedBatches(TinyCNN):
    def _step(self, batch, stage):
        _, x, y = batch
        return super()._step((x, y), stage)


def test_model_io_items_numpy_items_named_first_are_read_as_the_loader_collates_them(tmp_path):
    # held out (setups hunt 18): NumPy items, or an item's file name first, made Activation,
    # FeatureMap, GradCAM and Overfitting fail ("cannot find the input tensor")
    torch.manual_seed(0)
    data = (
        DataLoader(NumpyItems(digits(32, seed=1)), 8),
        DataLoader(NumpyItems(digits(16, seed=2)), 8),
    )
    monitors = [make_monitor(name) for name in ALL_MONITORS]
    _, _, messages = fit(tmp_path, monitors, model=NamedBatches(), data=data)
    tags = written_tags(tmp_path)
    written = {t for kind in ("images", "scalars") for t in tags[kind]}
    for monitor in monitors:
        name = type(monitor).__name__
        assert not failures(messages, name) and monitor.events > 0, name
        assert any(t.startswith(section(name) + "/") for t in written), name
