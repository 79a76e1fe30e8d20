"""Sparse gradients (an ``nn.Embedding(sparse=True)`` front end) read, never a fit aborted."""

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_cnnviz.kernels.callback import KernelMonitor
from lightning_cnnviz.kernels.frozen import gradient_state
from tests.tb import events


class TokenCNN(L.LightningModule):
    """Token ids -> a sparse embedding -> a 16x16 image -> a small CNN (SGD takes sparse)."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(16, 1, sparse=True)
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 64, 4)

    def forward(self, ids):
        x = self.emb(ids).view(-1, 1, 16, 16)
        return self.fc(F.max_pool2d(F.relu(self.conv(x)), 2).flatten(1))

    def training_step(self, batch, batch_idx):
        ids, y = batch
        return F.cross_entropy(self(ids), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


def test_sparse_gradients_are_read_by_their_stored_values():
    w = nn.Parameter(torch.zeros(4))
    w.grad = torch.sparse_coo_tensor([[1]], [float("nan")], (4,), check_invariants=True)
    assert gradient_state([w]) == "nonfinite"
    w.grad = torch.sparse_coo_tensor([[1]], [2.0], (4,), check_invariants=True)
    assert gradient_state([w]) == "some"


def test_sparse_gradients_a_fit_with_a_sparse_embedding_runs_and_logs(tmp_path):
    # setups hunt 36: `p.grad.abs().amax()` has no sparse kernel: the preset aborted the fit
    g = torch.Generator().manual_seed(0)
    y = torch.arange(64) % 4
    ids = torch.randint(0, 16, (64, 256), generator=g)
    ids[:, :64] = y[:, None] * 4
    trainer = L.Trainer(
        default_root_dir=tmp_path, max_steps=8, logger=TensorBoardLogger(tmp_path, name="tb"),
        callbacks=[KernelMonitor(every_n_steps=2)], enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False,
    )  # fmt: skip
    trainer.fit(TokenCNN(), DataLoader(TensorDataset(ids, y), batch_size=16))
    assert trainer.global_step == 8
    acc = events(tmp_path)
    steps = [e.step for e in acc.Scalars("kernels/conv/relative_change")]
    assert len(steps) >= 3
