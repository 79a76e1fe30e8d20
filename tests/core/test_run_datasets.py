"""The datasets a run reads, found without changing what the run does."""

from __future__ import annotations

import gc
import warnings
import weakref

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, Subset

from tests.contract.registry import MONITORS
from tests.contract.zoo import ZOO, ZooData
from tests.monitors import TinyCNN, loaders, make_monitor, trainer_for


class RandomValSubset(ZooData):
    """A quick random validation split drawn in ``val_dataloader`` (global RNG), calls counted."""

    def __init__(self) -> None:
        super().__init__()
        self.val_calls = 0

    def val_dataloader(self):
        self.val_calls += 1
        picked = torch.randperm(len(self.val_set))[:16].tolist()
        return DataLoader(Subset(self.val_set, picked), batch_size=self.batch_size)


def fit(tmp_path, callbacks):
    L.seed_everything(0, verbose=False)
    model, data = ZOO["bn_dropout"](), RandomValSubset()
    trainer = L.Trainer(
        default_root_dir=tmp_path,
        max_steps=6,
        limit_val_batches=2,
        val_check_interval=4,
        num_sanity_val_steps=0,  # the val loader is not loaded before training starts
        logger=False,
        callbacks=callbacks,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model, datamodule=data)
    return model.state_dict(), torch.random.get_rng_state(), data.val_calls


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_run_datasets_a_val_dataloader_drawing_at_random_trains_as_without_monitors(tmp_path):
    # setups hunt 23: the monitors called `val_dataloader()` again before training, the
    # global generator moved and the run trained on another shuffle
    monitors = list({type(m): m for m in (case.make() for case in MONITORS.values())}.values())
    plain, plain_rng, plain_calls = fit(tmp_path / "plain", [])
    watched, watched_rng, watched_calls = fit(tmp_path / "watched", monitors)
    assert sum(m.events for m in monitors) > 0
    assert watched_calls == plain_calls == 1
    assert torch.equal(watched_rng, plain_rng)
    for key, value in plain.items():
        assert torch.equal(watched[key], value), key


class Batches:
    """A training 'loader' that is a plain iterable of batches (Lightning takes any iterable)."""

    def __init__(self, data) -> None:
        self.x, self.y = data.tensors

    def __len__(self) -> int:
        return len(self.x) // 8

    def __iter__(self):
        for i in range(0, len(self.x), 8):
            yield self.x[i : i + 8], self.y[i : i + 8]


def test_find_dataset_plain_iterable_of_batches_is_said_not_raised(tmp_path):
    # setups hunt 24: `fit` raised "cannot find a dataset to draw probe samples from" from
    # OverfittingMonitor.on_train_start; the bare fit runs
    from lightning_cnnviz.presets import callbacks
    from tests.monitors import TinyCNN, digits, trainer_for
    from tests.tb import events, texts

    trainer = trainer_for(tmp_path, callbacks("standard"), max_epochs=2)
    val = DataLoader(digits(16, seed=2), batch_size=8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(TinyCNN(), Batches(digits(32, seed=1)), val)
    assert trainer.global_step == 8
    said = [
        str(w.message) for w in caught if "the training loader is a `Batches`" in str(w.message)
    ]
    assert said and all("not a `DataLoader` over a dataset" in m for m in said)
    (summary,) = texts(events(tmp_path / "tb"), "cnnviz/summary")
    assert "OverfittingMonitor/val data apart from training (cannot find a dataset" in summary
    assert "OverfittingMonitor/training order (needs a `DataLoader`" in summary


class Wrapped:
    """A fastai-style wrapper that converts the batches of the DataLoader it holds."""

    def __init__(self, loader) -> None:
        self.loader = loader

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for x, y in self.loader:
            yield x * 2, y


def test_find_dataset_wrapped_val_loader_is_never_read_as_the_training_set(tmp_path):
    # setups hunt 24: a wrapped val loader was "no validation data", and the val probe was
    # drawn from the training set
    from lightning_cnnviz.core.run_datasets import NoDataset, find_dataset, has_val_data
    from lightning_cnnviz.presets import callbacks
    from tests.monitors import TinyCNN, digits, trainer_for

    trainer = trainer_for(tmp_path, callbacks("standard"), max_epochs=2)
    train = DataLoader(digits(32, seed=1), batch_size=8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(TinyCNN(), train, Wrapped(DataLoader(digits(16, seed=2), batch_size=8)))
    said = [str(w.message) for w in caught]
    assert not [m for m in said if "no validation data" in m]
    aside = [m for m in said if "steps aside" in m and "the val loader is a `Wrapped`" in m]
    assert aside and not [m for m in said if " failed " in m]
    assert has_val_data(trainer) and find_dataset(trainer, "train") is not None
    with pytest.raises(NoDataset, match="the val loader is a `Wrapped`"):
        find_dataset(trainer, "val")


def test_find_dataset_an_empty_val_set_is_no_val_data(tmp_path):
    # setups hunt 54: three monitors failed drawing a probe of 0 val images; without a val
    # loader they read the training set, and so they do here
    from lightning_cnnviz.core.run_datasets import find_dataset, has_val_data
    from lightning_cnnviz.presets import callbacks
    from tests.monitors import TinyCNN, digits, trainer_for
    from tests.tb import events

    trainer = trainer_for(tmp_path, callbacks("standard"), max_epochs=2)
    train = DataLoader(digits(32, seed=1), batch_size=8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(TinyCNN(), train, DataLoader(Subset(digits(16, seed=2), []), batch_size=8))
    assert not [str(w.message) for w in caught if " failed " in str(w.message)]
    # hunt 58: told "training stopped at `max_steps` before the first validation"
    for monitor in ("OverfittingMonitor", "GradCAMMonitor"):  # not "no validation data"
        said = [str(w.message) for w in caught if str(w.message).startswith(monitor)]
        assert [m for m in said if "the val loader holds no item (an empty val dataset)" in m]
    assert not has_val_data(trainer)
    assert len(find_dataset(trainer, "val")) == len(find_dataset(trainer, "train")) == 32
    logged = events(tmp_path / "tb").Tags()["images"]
    for section in ("activations", "feature_maps", "gradcam", "kernels"):
        assert [t for t in logged if t.startswith(section + "/")], section


def test_run_datasets_sampled_indices_of_each_kind_of_sampler():
    from lightning.fabric.utilities.distributed import DistributedSamplerWrapper
    from torch.utils.data import RandomSampler, SubsetRandomSampler, WeightedRandomSampler

    from lightning_cnnviz.core.samplers import sampled_indices

    assert sampled_indices(SubsetRandomSampler([3, 1]), 5) == [3, 1]
    assert sampled_indices([4, 2], 5) == [4, 2] and sampled_indices(range(2), 5) == [0, 1]
    assert sampled_indices(torch.tensor([1, 0]), 5) == [1, 0]
    assert sampled_indices([1, 7], 5) is None  # not positions in this dataset
    assert sampled_indices(torch.tensor([0.5]), 5) is None
    assert sampled_indices(RandomSampler(range(5)), 5) is None  # the whole set
    assert sampled_indices(WeightedRandomSampler([1.0] * 5, 5), 5) is None
    # DDP: Lightning wraps the run's sampler to shard it; read through to the whole split
    wrapped = DistributedSamplerWrapper([4, 2, 0], num_replicas=2, rank=1, shuffle=False)
    assert sampled_indices(wrapped, 5) == [4, 2, 0]


class LoadersOnTheModule(TinyCNN):
    """Its loaders defined where most runs define them: on the LightningModule."""

    def train_dataloader(self):
        return loaders()[0]

    def val_dataloader(self):
        return loaders()[1]


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_run_datasets_a_fit_with_loaders_on_the_module_is_freed_after_it(tmp_path):
    # a sweep runs fit after fit: the loaders read before Lightning loads them were kept
    # in a table keyed by the loop, by way of the module that holds the trainer, forever
    kept = []
    for trial in range(2):
        model = LoadersOnTheModule()
        trainer = trainer_for(tmp_path / str(trial), [make_monitor("FeatureMapMonitor")])
        trainer.fit(model)
        kept.append((weakref.ref(model), weakref.ref(trainer)))
        del model, trainer
    gc.collect()
    assert [(m(), t()) for m, t in kept] == [(None, None)] * 2
