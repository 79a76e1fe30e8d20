"""Guessing where the logits and the labels are (``core/outputs.py``)."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_cnnviz.core.capture import first_tensor
from lightning_cnnviz.core.findings import checks_of
from lightning_cnnviz.core.outputs import (
    NotApplicable,
    guess_label_key,
    guess_output_key,
    logits_from,
)
from tests.monitors import (
    ALL_MONITORS,
    TinyCNN,
    assert_every_monitor_wrote,
    digits,
    failures,
    fit,
    make_monitor,
)


def test_outputs_guess_prefers_class_count_then_name_then_first():
    feats, logits = torch.zeros(2, 10), torch.zeros(2, 4)
    assert guess_output_key((feats, logits), num_classes=4)[0] == 1
    assert guess_output_key({"emb": feats, "out": logits}, num_classes=None)[0] == "out"
    # two entries fit the class count: the name decides, else the first
    key, why = guess_output_key({"a": logits, "b": logits}, num_classes=4)
    assert key == "a" and "first tensor" in why
    seg = torch.zeros(2, 4, 8, 8)
    key, why = guess_output_key((feats, seg), num_classes=4)
    assert key == 1 and "second dim equals the 4 classes" in why


def test_outputs_guess_with_labels_missing_classes_takes_the_one_wide_enough():
    # an (aux, logits) model read through an 8-image probe of 10 classes: labels 0-7
    aux, logits = torch.zeros(2, 3), torch.zeros(2, 10)
    key, why = guess_output_key((aux, logits), num_classes=8)
    assert key == 1 and "room for labels 0-7" in why
    assert guess_output_key((torch.zeros(2, 12), logits), num_classes=8)[0] == 0  # no guess


def test_outputs_guess_takes_one_logit_for_labels_0_1_over_wider_features():
    # hunt 116: `(logit (N, 1), features (N, 32))` under BCE had its features read as the
    # logits ("the one entry with room for labels 0-1")
    key, why = guess_output_key((torch.zeros(4, 1), torch.zeros(4, 32)), num_classes=2)
    assert (key, why) == (0, "shape (4, 1): one logit for labels 0/1")
    assert guess_output_key((torch.zeros(4, 1), torch.zeros(4, 2)), num_classes=2)[0] == 1


def test_outputs_guess_label_only_one_integer_scalar():
    x = torch.zeros(3, 4, 4)
    assert guess_label_key({"pixels": x, "cls": torch.tensor(2)})[0] == "cls"
    assert guess_label_key({"pixels": x, "cls": 2, "flag": True})[0] == "cls"
    assert guess_label_key({"pixels": x, "a": 1, "b": torch.tensor(0)}) == (None, "")
    assert guess_label_key({"pixels": x, "w": torch.tensor(0.5)}) == (None, "")
    assert guess_label_key((x, 1)) == (None, "")


def test_outputs_as_logits_reads_a_softmax_models_probabilities_through_their_log():
    from lightning_cnnviz.core.logits import as_logits, is_simplex

    logits = torch.randn(8, 5) * 4
    probs = logits.softmax(1)
    assert bool(is_simplex(probs)) and not bool(is_simplex(logits))
    assert torch.allclose(as_logits(probs).softmax(1), probs, atol=1e-6)
    assert torch.equal(as_logits(logits), logits)  # logits pass unchanged
    assert not bool(is_simplex(probs * 0.9))  # rows must sum to one


def test_outputs_dataclass_output_logits_guessed_and_read():
    # held out (setups hunt 18): a model returning an output object with `.logits` made
    # GradCAM and Overfitting fail ("expected a tensor ..., got HFOut")
    import dataclasses

    @dataclasses.dataclass
    class Out:
        hidden: torch.Tensor
        logits: torch.Tensor

    out = Out(torch.zeros(2, 16, 4, 4), torch.ones(2, 10))
    assert guess_output_key(out, num_classes=10) == (
        "logits",
        "shape (2, 10): its last dim equals the 10 classes",
    )
    assert first_tensor(out, "logits") is out.logits
    assert first_tensor(out) is out.hidden  # no key: the first tensor, as for a tuple


def test_outputs_digit_string_key_indexes_a_tuple_output():
    # `--...output_key 0` on the cnnviz command line arrives as "0"
    out = (torch.zeros(2, 10), torch.ones(2, 8))
    assert first_tensor(out, "1") is out[1]


class ConvHead(TinyCNN):
    """A 1x1-conv classifier head over pooled features: (N, classes, 1, 1) logits."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        x = self.pool1(self.relu1(self.bn1(self.conv1(x))))
        return self.fc(F.adaptive_avg_pool2d(self.relu2(self.bn2(self.conv2(x))), 1))

    def _step(self, batch, stage):
        x, y = batch
        logits = self(x).flatten(1)
        loss = F.cross_entropy(logits, y)
        self.log(f"{stage}/loss", loss)
        self.log(f"{stage}/acc", (logits.argmax(1) == y).float().mean())
        return loss


def test_outputs_one_by_one_logits_are_read_as_class_scores(tmp_path):
    # setups hunt 19: (N, K, 1, 1) logits were "per-position scores": Adversarial stepped
    # aside, Grad-CAM's object checks and most of Overfitting's did not run
    monitors = [make_monitor(name) for name in ALL_MONITORS]
    trainer, _, messages = fit(tmp_path, monitors, model=ConvHead())
    assert_every_monitor_wrote(tmp_path, monitors, messages)
    assert not [m for m in messages if "per-position" in m or "steps aside" in m]
    checks = checks_of(trainer)
    assert checks[("GradCAMMonitor", "CAM on the object")].ran
    assert checks[("OverfittingMonitor", "loss fed probabilities")].ran


class Reconstruction(TinyCNN):
    """An autoencoder: the output is an image of the input's shape, the target the input."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Conv2d(8, 1, 1)

    def forward(self, x):
        return self.fc(self.relu2(self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))))

    def _step(self, batch, stage):
        loss = F.mse_loss(self(batch[0]), batch[1])
        self.log(f"{stage}/loss", loss)
        return loss


def test_outputs_a_reconstruction_is_not_called_per_position_scores(tmp_path):
    def pairs(data):
        x = data.tensors[0]
        return DataLoader(TensorDataset(x, x), batch_size=8)

    monitor = make_monitor("OverfittingMonitor")
    data = (pairs(digits(32, seed=1)), pairs(digits(16, seed=2)))
    _, _, messages = fit(tmp_path, [monitor], model=Reconstruction(), data=data)
    said = [m for m in messages if "calibration (ECE)" in m]
    assert len(said) == 1 and "(1, 16, 16) per sample (an image of the input's shape" in said[0]


def test_outputs_a_list_of_one_dict_per_image_is_no_logits_said_why():
    # held out (setups hunt 22): a torchvision-style detector (a list of per-image dicts in
    # eval mode) made Grad-CAM and OverfittingMonitor step aside on "stack expects each
    # tensor to be equal size" and a batch-size mismatch
    per_image = [{"boxes": torch.zeros(1, 4), "scores": torch.ones(1)} for _ in range(3)]
    with pytest.raises(NotApplicable, match="a list of 3 dicts, one per image"):
        logits_from(per_image)
    assert logits_from(per_image, "0").shape == (1, 4)  # named: read as asked
    assert logits_from([torch.zeros(3, 2), {"aux": 1}]).shape == (3, 2)  # (logits, extras)


class FeatureList(TinyCNN):
    """Returns its stages' feature maps (timm's ``features_only``); the steps apply the head."""

    def forward(self, x):
        first = self.relu1(self.bn1(self.conv1(x)))
        return [first, self.relu2(self.bn2(self.conv2(self.pool1(first))))]

    def _step(self, batch, stage):
        logits = self.fc(self.pool2(self(batch[0])[1]).flatten(1))
        loss = F.cross_entropy(logits, batch[1])
        self.log(f"{stage}/loss", loss)
        return loss


def test_outputs_feature_maps_with_no_class_entry_are_no_logits_said_why(tmp_path):
    # setups hunt 80: a (N, 64, 8, 8) map, "the first tensor", was read as four classes'
    # scores and its Grad-CAMs drawn as classes'
    monitors = [make_monitor("GradCAMMonitor"), make_monitor("OverfittingMonitor")]
    trainer, _, messages = fit(tmp_path, monitors, model=FeatureList())
    said = [m for m in messages if "none of the 2 tensors the model returns is the logits" in m]
    assert said and "of the 4 classes its labels hold ((1, 8, 16, 16), (1, 8, 8, 8)" in said[0]
    assert any(m.startswith("GradCAMMonitor steps aside") for m in said)
    assert not [m for m in messages if "as the logits (shape" in m]  # no guess said
    checks = checks_of(trainer)
    assert not checks[("GradCAMMonitor", "")].ran
    assert "none of the 2 tensors" in checks[("OverfittingMonitor", "class imbalance")].why


class TimeMajor(TinyCNN):
    """A CRNN-style head: the conv features as 4 time steps, scores (T, N, classes)."""

    def forward(self, x):
        x = self.pool1(self.relu1(self.bn1(self.conv1(x))))
        x = self.pool2(self.relu2(self.bn2(self.conv2(x))))  # (N, 8, 4, 4)
        steps = x.permute(3, 0, 1, 2).flatten(2)  # (T=4, N, 32): time-major
        return self.fc(steps.repeat(1, 1, 4))  # (T, N, classes)

    def _step(self, batch, stage):
        x, y = batch
        scores = self(x).mean(0)  # one score per class per image, from the time steps
        loss = F.cross_entropy(scores, y)
        self.log(f"{stage}/loss", loss)
        return loss


def test_outputs_a_time_major_output_is_said_and_the_val_curve_checks_go_on(tmp_path):
    # setups hunt 26: a CRNN's (T, N, C) scores made Grad-CAM step aside on "The size of
    # tensor a (16) must match the size of tensor b (8)", and the val probe read (64, 11)
    # per image as per-position scores
    monitors = [make_monitor("GradCAMMonitor"), make_monitor("OverfittingMonitor")]
    trainer, _, messages = fit(tmp_path, monitors, model=TimeMajor())
    why = "shape (4, 1, 4) for 1 image: its first dimension is not the batch (a time-major"
    assert monitors[0].disabled and why in monitors[0].aside_reason
    assert not [m for m in messages if "must match the size" in m or "per-position" in m]
    checks = checks_of(trainer)
    assert checks[("OverfittingMonitor", "overfitting")].ran
    assert why in checks[("OverfittingMonitor", "loss fed probabilities")].why
    assert sum("the checks that read the model's scores do not run" in m for m in messages) == 1


class Policy(TinyCNN):
    """A probabilistic head: ``forward`` returns ``Categorical(logits=...)``."""

    def forward(self, x):
        return torch.distributions.Categorical(logits=super().forward(x))

    def _step(self, batch, stage):
        x, y = batch
        dist = self(x)
        loss = -dist.log_prob(y).mean()
        self.log(f"{stage}/loss", loss)
        self.log(f"{stage}/acc", (dist.logits.argmax(1) == y).float().mean())
        return loss


def test_outputs_a_categorical_distribution_is_read_through_its_logits(tmp_path):
    # setups hunt 26: GradCAM and OverfittingMonitor stepped aside on "expected a tensor
    # (or a tuple/dict holding one), got Categorical"
    monitors = [make_monitor(name) for name in ("GradCAMMonitor", "OverfittingMonitor")]
    trainer, _, messages = fit(tmp_path, monitors, model=Policy())
    assert_every_monitor_wrote(tmp_path, monitors, messages)
    assert checks_of(trainer)[("OverfittingMonitor", "loss fed probabilities")].ran
    normal = torch.distributions.Normal(torch.zeros(2), torch.ones(2))
    with pytest.raises(TypeError, match="a Normal distribution, which holds no class scores"):
        first_tensor(normal)


class ArgmaxInEval(TinyCNN):
    """A deployment-minded ``forward``: scores in training, class ids in eval mode."""

    def forward(self, x):
        out = super().forward(x)
        return out if self.training else out.argmax(1)

    def validation_step(self, batch, batch_idx):
        self.log("val/acc", (self(batch[0]) == batch[1]).float().mean())


def test_outputs_class_ids_in_eval_mode_are_said_as_such(tmp_path):
    # setups hunt 26: GradCAM blamed "a forward under @torch.no_grad()", OverfittingMonitor
    # called the ids "shape () per sample (per-position scores, as a segmentation net gives)"
    monitors = [make_monitor("GradCAMMonitor"), make_monitor("OverfittingMonitor")]
    trainer, _, messages = fit(tmp_path, monitors, model=ArgmaxInEval())
    why = "the model's eval-mode output is integer (torch.int64, shape (1,)): class ids"
    assert monitors[0].disabled and why in monitors[0].aside_reason
    assert why in checks_of(trainer)[("OverfittingMonitor", "loss fed probabilities")].why
    assert not [m for m in messages if "no_grad" in m or "per-position" in m]


class BatchedFlips(TinyCNN):
    """Test-time augmentation in one pass: the batch and its mirror stacked, scores averaged."""

    def forward(self, x):
        if self.training:
            return super().forward(x)
        scores = super().forward(torch.cat([x, x.flip(-1)]))
        return (scores[: len(x)] + scores[len(x) :]) / 2


def test_outputs_layers_run_on_stacked_copies_of_the_batch_step_aside_saying_so(tmp_path):
    # setups hunt 30: Grad-CAM, embeddings and the attack's examples failed on raw errors
    # (their layers hold 2N rows for N images)
    monitors = [make_monitor(name) for name in ALL_MONITORS]
    _, _, messages = fit(tmp_path, monitors, model=BatchedFlips())
    reason = "stacks copies of the batch, as batched test-time augmentation does"
    stacked = {"GradCAMMonitor", "EmbeddingMonitor", "AdversarialMonitor"}
    for monitor in monitors:
        name = type(monitor).__name__
        assert not failures(messages, name), name
        said = [m for m in messages if m.startswith(name) and reason in m]
        assert (len(said) == 1 and monitor.disabled) if name in stacked else not said, name
