import math

import numpy as np
import pytest
import torch
from PIL import Image

from lightning_cnnviz.core.rendering import thumbnails
from lightning_cnnviz.embeddings.callback import EmbeddingMonitor
from lightning_cnnviz.embeddings.features import class_separation, draw_indices, pool_features
from tests.tb import events
from tests.views_helpers import run


def test_embedding_class_separation_hand_computed():
    # centroids (0, 1) and (10, 1): between = 10; every point is 1 from its centroid
    features = torch.tensor([[0.0, 0.0], [0.0, 2.0], [10.0, 0.0], [10.0, 2.0]])
    assert float(class_separation(features, torch.tensor([0, 0, 1, 1]))) == pytest.approx(10.0)
    # three classes on a line: centroid distances 3, 4, 7 -> mean 14/3; within = 1
    features = torch.tensor([[0.0, -1.0], [0.0, 1.0], [3.0, -1], [3.0, 1], [7.0, -1], [7.0, 1]])
    value = class_separation(features, torch.tensor([0, 0, 1, 1, 2, 2]))
    assert float(value) == pytest.approx(14 / 3)
    assert math.isnan(float(class_separation(features, torch.zeros(6, dtype=torch.long))))
    assert math.isnan(float(class_separation(torch.ones(4, 2), torch.tensor([0, 0, 1, 1]))))


def test_embedding_draw_indices_probe_first_no_repeats():
    g = torch.Generator().manual_seed(3)
    picked = draw_indices(50, 20, [4, 9, 4], g)
    assert picked[:2] == [4, 9] and len(picked) == 20 and len(set(picked)) == 20
    assert sorted(draw_indices(5, 100, [], torch.Generator().manual_seed(0))) == [0, 1, 2, 3, 4]
    assert draw_indices(50, 2, [1, 2, 3], g) == [1, 2]


def test_embedding_pool_and_thumbnails_shapes():
    assert pool_features(torch.arange(8.0).view(1, 2, 2, 2)).tolist() == [[1.5, 5.5]]
    assert pool_features(torch.ones(3, 7)).shape == (3, 7)
    assert thumbnails(torch.rand(2, 3, 28, 28)).shape == (2, 3, 28, 28)
    assert thumbnails(torch.rand(2, 3, 224, 100)).shape == (2, 3, 32, 15)


def _projector(log_dir):
    configs = list(log_dir.rglob("projector_config.pbtxt"))
    assert len(configs) == 1
    return configs[0].parent, configs[0].read_text()


def test_embeddings_projector_files_and_scalar(tmp_path):
    monitor = EmbeddingMonitor(max_points=200, num_samples=10, every_n_epochs=1)
    run(tmp_path, [monitor], steps=4)
    root, config = _projector(tmp_path)
    assert 'tensor_name: "embeddings/fc2 (latest, step 4)"' in config
    step_dir = next(root.glob("00004/*"))
    tensors = np.loadtxt(step_dir / "tensors.tsv", delimiter="\t")
    assert tensors.shape == (200, 128)  # the input of fc2: relu3's 128 features
    meta = (step_dir / "metadata.tsv").read_text().splitlines()
    assert meta[0] == "label\tpredicted" and len(meta) == 201
    labels = [int(row.split("\t")[0]) for row in meta[1:]]
    assert labels[:10] == list(range(10))  # the class-balanced probe comes first
    sprite = Image.open(step_dir / "sprite.png")
    assert sprite.size == (15 * 28, 15 * 28)  # ceil(sqrt(200)) = 15 thumbnails a side
    assert "sprite" in config and "metadata_path" in config
    scalars = events(tmp_path).Scalars("embeddings/fc2/class_separation")
    assert [e.step for e in scalars] == [4] and 0 < scalars[0].value < 100
    assert monitor.timings["total"] > 0 and monitor.events == 1


def test_embeddings_selected_conv_layer_is_pooled(tmp_path):
    monitor = EmbeddingMonitor(layers="conv2", max_points=64, every_n_steps=3, batch_size=16)
    run(tmp_path, [monitor], steps=6)
    root, _ = _projector(tmp_path)
    for step in ("00003", "00006"):
        tensors = np.loadtxt(next(root.glob(f"{step}/*")) / "tensors.tsv", delimiter="\t")
        assert tensors.shape == (64, 32)
    assert len(events(tmp_path).Scalars("embeddings/conv2/class_separation")) == 2


def test_embeddings_class_separation_grows_with_training(tmp_path):
    def separation(lr, name):
        from tests.views_helpers import reference_model

        monitor = EmbeddingMonitor(max_points=256, every_n_epochs=1)
        run(tmp_path / name, [monitor], model=reference_model(lr), steps=30)
        return events(tmp_path / name).Scalars("embeddings/fc2/class_separation")[0].value

    untrained, trained = separation(1e-12, "untrained"), separation(2e-3, "trained")
    assert trained > 1.2 * untrained, (untrained, trained)


def test_embeddings_points_survive_a_checkpoint(tmp_path):
    monitor = EmbeddingMonitor(max_points=40, every_n_steps=2)
    run(tmp_path, [monitor], steps=2)
    state = monitor.state_dict()
    again = EmbeddingMonitor(max_points=40, every_n_steps=2, seed=5)
    again.load_state_dict(state)
    assert again.point_indices == monitor.point_indices and len(again.point_indices) == 40


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_points": 0}, "`max_points` must be a positive integer, got 0"),
        ({"batch_size": 2.5}, "`batch_size` must be a positive integer, got 2.5"),
        ({"every_n_steps": 2, "every_n_epochs": 1}, "Set only one of"),
    ],
)
def test_embeddings_arguments_are_checked(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        EmbeddingMonitor(**kwargs)
