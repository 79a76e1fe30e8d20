"""The datasets a run reads, found without changing what the run does."""

from __future__ import annotations

import warnings

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, Subset

from tests.contract.registry import MONITORS
from tests.contract.zoo import ZOO, ZooData


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
