"""The kernel tests' pictures (a hand-set edge kernel, pixel reads), small nets and fits."""

import io

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_cnnviz.core import rendering
from lightning_cnnviz.core.capture import hook_count
from tests.tb import events

EDGE = torch.tensor([[-1.0, 0.0, 1.0]] * 3)  # vertical edge detector: - left, + right


def coolwarm(value01: float) -> list[int]:
    return rendering.apply_colormap(torch.tensor([[value01]]), "coolwarm")[:, 0, 0].tolist()


def pixel(img: torch.Tensor, y: int, x: int) -> list[int]:
    return img[:, y, x].tolist()


# A 3x3 kernel is upscaled 8x to 24 px; tile k of a row starts at 1 + k * 25 (1 px separator).
def centre(tile_row: int, tile_col: int, r: int, c: int) -> tuple[int, int]:
    return 1 + tile_row * 25 + 8 * r + 4, 1 + tile_col * 25 + 8 * c + 4


class EdgeNet(L.LightningModule):
    """conv1 holds the hand-set edge kernel (filter 0) and its negative (filter 1)."""

    def __init__(self, lr: float = 0.0) -> None:
        super().__init__()
        self.lr = lr
        self.conv1 = nn.Conv2d(1, 2, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(2, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 4 * 4, 3)
        self.hooks: list[int] = []
        with torch.no_grad():
            self.conv1.weight.copy_(torch.stack([EDGE, -EDGE])[:, None])

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc(x.flatten(1))

    def training_step(self, batch, batch_idx):
        self.hooks.append(sum(hook_count(self).values()))
        x, y = batch
        return F.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)


def loader(n: int = 32) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(n, 1, 16, 16, generator=g), torch.arange(n) % 3)
    return DataLoader(data, batch_size=4)


def run(tmp_path, monitor, model=None, steps=6, ckpt=None, data=None):
    model = model or EdgeNet()
    trainer = L.Trainer(
        default_root_dir=tmp_path,
        max_steps=steps,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        logger=TensorBoardLogger(tmp_path, name="tb"),
        callbacks=monitor if isinstance(monitor, list) else [monitor],
    )
    trainer.fit(model, data or loader(), ckpt_path=ckpt)
    return model, trainer, events(tmp_path)


def read_images(acc, tag) -> list[tuple[int, np.ndarray]]:
    return [
        (e.step, np.asarray(Image.open(io.BytesIO(e.encoded_image_string)).convert("RGB")))
        for e in acc.Images(tag)
    ]


class WideNet(EdgeNet):
    """EdgeNet's shape with conv layers wide enough to tell trained kernels from random ones."""

    def __init__(self, lr: float = 0.05) -> None:
        super().__init__(lr)
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 4, 3, padding=1)
