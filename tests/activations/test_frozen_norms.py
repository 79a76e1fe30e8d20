import torch

from lightning_cnnviz.core.findings import findings_of
from tests.monitors import FrozenNorms, TinyCNN, fit, make_monitor


def test_frozen_norms_at_their_initial_statistics_are_a_problem(tmp_path):
    # held out (hunt 14): BatchNorm kept in eval mode while training from scratch, 40-49%
    # val against 93-95%: "no problems found"
    monitor = make_monitor("ActivationMonitor", every_n_steps=2)
    trainer, _, said = fit(tmp_path / "init", [monitor], model=FrozenNorms())
    assert [m for m in said if m.startswith("BatchNorm frozen at step 2 (epoch 0)")]
    (found,) = [f for f in findings_of(trainer) if f.kind == "frozen_batch_norm"]
    assert found.severity == "problem" and found.figures["layers"] == 2
    assert "`bn1`, `bn2` are in eval mode while the model trains" in found.message
    # pretrained statistics frozen on purpose: not at their initial values, never named
    model = FrozenNorms()
    with torch.no_grad():
        for bn in (model.bn1, model.bn2):
            bn.running_mean.fill_(0.3)
            bn.running_var.fill_(2.0)
    monitor = make_monitor("ActivationMonitor", every_n_steps=2)
    trainer, _, _ = fit(tmp_path / "pretrained", [monitor], model=model)
    assert not [f for f in findings_of(trainer) if f.kind == "frozen_batch_norm"]


def test_frozen_norms_of_a_whole_model_left_in_eval_mode_are_a_problem(tmp_path):
    # setups hunt 68: `model.eval()` before `fit` (Lightning keeps the mode): every step ran
    # in eval mode, BatchNorm at mean 0 / variance 1 throughout, "no problems found"
    model = TinyCNN().eval()
    monitor = make_monitor("ActivationMonitor", every_n_steps=2)
    trainer, _, _ = fit(tmp_path, [monitor], model=model)
    assert not model.training and bool((model.bn1.running_var == 1).all())
    (found,) = [f for f in findings_of(trainer) if f.kind == "frozen_batch_norm"]
    assert found.severity == "problem" and "`model.eval()` before `fit`" in found.message


class WithSpareNorm(TinyCNN):
    """TinyCNN holding a BatchNorm layer its forward never calls."""

    def __init__(self) -> None:
        super().__init__()
        self.spare = torch.nn.BatchNorm2d(8)


def test_frozen_norms_leave_out_a_layer_forward_never_calls(tmp_path):
    # setups hunt 69: a fine-tune in eval mode with a spare `head_bn` never called was told
    # "`net.head_bn` are in eval mode ... they do not normalise"
    monitor = make_monitor("ActivationMonitor", every_n_steps=2)
    trainer, _, _ = fit(tmp_path, [monitor], model=WithSpareNorm().eval())
    (found,) = [f for f in findings_of(trainer) if f.kind == "frozen_batch_norm"]
    assert "`bn1`, `bn2` are in eval mode" in found.message and "spare" not in found.message


class WithAverage(TinyCNN):
    """TinyCNN keeping a weight average of itself in eval mode, as timm's ModelEmaV3 does."""

    def __init__(self) -> None:
        super().__init__()
        copy = TinyCNN()
        self.ema = torch.optim.swa_utils.AveragedModel(copy).requires_grad_(False)

    def on_train_epoch_start(self):
        self.ema.eval()  # by design: the average is evaluated, never trained


def test_frozen_norms_in_a_weight_average_copy_are_not_told(tmp_path):
    # setups hunt 56: a timm ModelEmaV3 kept on the module told "BatchNorm frozen" at
    # step 1, before the module's first update of the average
    monitor = make_monitor("ActivationMonitor", every_n_steps=2)
    trainer, _, _ = fit(tmp_path, [monitor], model=WithAverage())
    assert not [f for f in findings_of(trainer) if f.kind == "frozen_batch_norm"]
