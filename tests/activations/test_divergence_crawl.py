"""A blow-up of the first steps the loss comes back from only to crawl (held-out hunt 118)."""

import torch.nn.functional as F

from lightning_cnnviz.core.findings import findings_of
from tests.activations.diagnosis_nets import Net, fit, leaky_cnn
from tests.tb import events, texts


class Scaled(Net):
    """The loss returned 70x at step 1 (its gradient as ever), ``after`` x from step 12.

    As Adam at 0.3 gave mobilenet_v2: 2.32 -> 179 at step 1, then about its start.
    """

    def __init__(self, lr: float, after: float) -> None:
        super().__init__(leaky_cnn(), lr=lr)
        self.after = after

    def training_step(self, batch, batch_idx):
        loss = F.cross_entropy(self(batch[0]), batch[1])
        step = self.global_step
        factor = 70.0 if step == 1 else self.after if step >= 12 else 1.0
        return loss + ((factor - 1.0) * loss).detach()  # the value scaled, not the update


def _divergence(trainer):
    (found,) = [f for f in findings_of(trainer) if f.kind == "divergence"]
    return found


def test_divergence_crawl_back_below_the_start_stays_a_problem(tmp_path):
    # a model at a rate too small to learn: the loss back to 0.85x its start after the
    # spike (was: "Training recovered ... (below the start)", a note, at step 20)
    trainer = fit(tmp_path, Scaled(lr=1e-6, after=0.85), 40, every=10)[0]
    found = _divergence(trainer)
    assert found.severity == "problem" and found.step == 20
    assert "came back from the spike at step 1" in found.message
    assert "has learnt little since" in found.message and "% below its start" in found.message
    assert 0.8 < found.figures["loss_now"] / found.figures["start_loss"] < 0.9
    assert "lower the learning rate" in found.message
    said = "\n".join(texts(events(tmp_path), "activations/diagnosis"))
    assert "Training recovered" not in said


def test_divergence_crawl_a_loss_that_learns_after_the_spike_is_a_note(tmp_path):
    # the same spike, a model that learns: halved by step 20, a note as before
    trainer = fit(tmp_path, Scaled(lr=0.05, after=1.0), 40, every=10)[0]
    found = _divergence(trainer)
    assert found.severity == "note" and "Training recovered from the loss spike" in found.message
