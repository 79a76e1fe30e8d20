"""earlier_cause: the standing root causes later findings of other kinds name."""

from lightning_cnnviz.core.findings import Finding, findings_of, report
from lightning_cnnviz.core.root_causes import earlier_cause


class Run:
    """Anything can hold the record (the trainer, in a run)."""


def test_root_causes_earlier_cause_names_a_standing_root_cause_problem():
    run = Run()
    assert earlier_cause(run, "divergence") == ""
    report(run, Finding("activations", "dead_units", 10, 0, "relu 30% dead", severity="note"))
    assert earlier_cause(run, "divergence") == ""  # not a root cause
    report(run, Finding("overfitting", "unshuffled_batches", 0, 0, "in class order"))
    said = earlier_cause(run, "divergence")
    assert said.startswith("This may follow from a problem reported first (step 0, `unshuffled")
    assert "the training batches come in class order. Fix that first." in said
    assert earlier_cause(run, "unshuffled_batches") == ""  # a root cause is not its own
    # a root cause told as a note (gone) stands behind nothing
    findings_of(run)[-1] = Finding("overfitting", "loss_mismatch", 69, 1, "gone", severity="note")
    assert earlier_cause(run, "not_learning") == ""


def test_root_causes_earlier_cause_names_inputs_far_from_unit_scale_though_a_note():
    run = Run()
    report(run, Finding("activations", "unnormalised_inputs", 3, 0, "barely vary", severity="note"))
    said = earlier_cause(run, "not_learning")
    assert said.startswith("This may follow from a note reported first (step 3, `unnormalised")
    assert "the inputs are far from unit scale. Fix that first." in said


def test_root_causes_earlier_cause_inputs_are_named_by_root_causes_too():
    # held out: inputs divided by 255 twice; vanishing gradients at step 120 (a root cause
    # itself) was told with init and architecture remedies, the inputs never named
    run = Run()
    report(run, Finding("activations", "unnormalised_inputs", 12, 0, "barely vary", {}, "note"))
    said = earlier_cause(run, "vanishing_gradients")
    assert "(step 12, `unnormalised_inputs`): the inputs are far from unit scale" in said
    assert earlier_cause(run, "unnormalised_inputs") == ""
    report(run, Finding("overfitting", "unshuffled_batches", 0, 0, "in class order"))
    assert "unshuffled" not in earlier_cause(run, "vanishing_gradients")  # no chain of causes


def test_root_causes_earlier_cause_names_layers_frozen_at_random_init_not_a_frozen_backbone():
    run = Run()
    report(run, Finding("kernels", "frozen_layers", 40, 0, "frozen, trained", severity="note"))
    assert earlier_cause(run, "not_learning") == ""  # frozen on purpose: no cause
    findings_of(run)[-1] = Finding("kernels", "frozen_layers", 40, 0, "frozen, untrained")
    said = earlier_cause(run, "generalisation_gap")
    assert "(step 40, `frozen_layers`): layers learn nothing (frozen at their random" in said


def test_root_causes_earlier_cause_names_standing_vanishing_gradients():
    # held out: 14 Conv1d + Sigmoid, vanishing at step 7, at chance at step 150 (no cause)
    run = Run()
    report(run, Finding("activations", "vanishing_gradients", 7, 0, "1.8e-09 of the last"))
    said = earlier_cause(run, "not_learning")
    assert "(step 7, `vanishing_gradients`): the gradient vanishes before it reaches" in said
    findings_of(run)[-1] = Finding("activations", "vanishing_gradients", 90, 1, "gone", {}, "note")
    assert earlier_cause(run, "not_learning") == ""  # withdrawn once learning goes on


def test_root_causes_earlier_cause_names_a_gap_behind_later_val_curve_problems_only():
    # held out: half the val labels wrong; the gap at step 96, then val loss rising as the
    # model grew sure of the right labels, told "stop at epoch 0"
    run = Run()
    report(run, Finding("overfitting", "generalisation_gap", 96, 2, "train 100% vs val 47%"))
    for kind in ("overfitting", "memorisation"):
        said = earlier_cause(run, kind)
        assert "(step 96, `generalisation_gap`): the training and validation images" in said
    assert earlier_cause(run, "dead_units") == ""  # the gap stands behind val curves only
    report(run, Finding("activations", "divergence", 120, 3, "diverged"))
    assert earlier_cause(run, "not_learning").endswith("training diverged. Fix that first.")


def test_root_causes_earlier_cause_started_before_the_problem_only():
    # hunt 25: a BatchNorm mismatch standing since step 7, updated at step 126, was told
    # as following from unstable training found at step 126
    class Run: ...

    run = Run()
    report(run, Finding("overfitting", "unstable_training", 126, 3, "the loss climbs",
                        {"since_step": 94}))  # fmt: skip
    assert earlier_cause(run, "bn_mismatch", since=7) == ""
    assert "(step 126, `unstable_training`)" in earlier_cause(run, "bn_mismatch", since=126)
    spiked = Run()  # a divergence found at 60 whose spike came at step 31 precedes step 32
    report(spiked, Finding("activations", "divergence", 60, 1, "spike", {"spike_step": 31}))
    assert "(step 60, `divergence`)" in earlier_cause(spiked, "not_learning", since=32)


def test_root_causes_earlier_cause_a_loss_scaled_down_is_no_cause_of_too_large_updates():
    # hunt 49: a loss weight ramped 0.01 -> 1 under SGD at lr 1.5; the blow-up (exploding
    # gradients, dead units) was told "may follow from `scaled_loss`", which makes the
    # steps smaller
    down, up = Run(), Run()
    report(down, Finding("activations", "scaled_loss", 9, 0, "0.031x", {"scale": 0.031}, "note"))
    report(up, Finding("activations", "scaled_loss", 9, 0, "100x", {"scale": 100.0}, "note"))
    for kind in ("exploding_gradients", "dead_units", "divergence"):
        assert earlier_cause(down, kind) == ""
        assert "`scaled_loss`" in earlier_cause(up, kind)
    assert "`scaled_loss`" in earlier_cause(down, "not_learning")  # smaller steps: a cause


def test_root_causes_earlier_cause_a_freeze_note_gives_way_to_a_divergence_of_its_own():
    # held-out hunt 121: BatchNorm frozen on purpose at step 40 (no harm, a note), the rate
    # raised 30x at step 128: `not_learning` named the freeze over the divergence
    run = Run()
    switch = Finding("activations", "eval_mode_switch", 40, 1, "eval", {"norm_layers": 2}, "note")
    report(run, switch)
    assert "`eval_mode_switch`" in earlier_cause(run, "not_learning")  # alone: still a cause
    report(run, Finding("activations", "divergence", 140, 4, "the rate jumped", {"lr": 0.6}))
    said = earlier_cause(run, "not_learning")
    assert "(step 140, `divergence`): training diverged. Fix that first." in said
    # a divergence the switch caused names it still
    findings_of(run)[-1] = Finding(
        "activations", "divergence", 140, 4, "switched", {"eval_mode_since": 40}
    )
    said = earlier_cause(run, "not_learning")
    assert "(step 40, `eval_mode_switch`): BatchNorm layers were switched" in said


def test_root_causes_earlier_cause_a_root_cause_names_what_it_is_known_to_follow_from():
    # held-out hunt 122: SGD with `weight_decay=0.5`, vanishing gradients told at step 80
    # with initialisation remedies, the decay told at 40 never named behind them
    run = Run()
    report(run, Finding("activations", "weight_decay_too_strong", 40, 1, "5% of every weight"))
    said = earlier_cause(run, "vanishing_gradients")
    assert "(step 40, `weight_decay_too_strong`): weight decay takes too large a share" in said
    assert earlier_cause(run, "unstable_training") == ""  # not a cause of that
    # held-out hunt 121: BatchNorm frozen at step 72, the loss up 3 steps later
    switch = Finding("activations", "eval_mode_switch", 80, 3, "eval", {"norm_layers": 20}, "note")
    report(run, switch)
    said = earlier_cause(run, "unstable_training")
    assert "(step 80, `eval_mode_switch`): BatchNorm layers were switched to eval mode" in said


def test_root_causes_earlier_cause_a_cause_of_its_own_names_no_root_cause_it_did_not_follow():
    # held-out hunt 123: BatchNorm frozen on purpose (a problem, the run at 94%), the rate
    # raised 300x at step 140: the divergence and `not_learning` named the freeze
    run = Run()
    report(run, Finding("activations", "frozen_batch_norm", 8, 0, "BatchNorm frozen"))
    jumped = {"rate_rise": 300.0, "sudden": True, "lr": 3.0, "spike_step": 141}
    assert earlier_cause(run, "divergence", figures=jumped) == ""
    assert "`frozen_batch_norm`" in earlier_cause(run, "divergence", figures={"lr": 3.0})
    report(run, Finding("activations", "divergence", 160, 3, "300x", jumped))
    said = earlier_cause(run, "not_learning", since=141)
    assert "(step 160, `divergence`): training diverged. Fix that first." in said
    # what makes every update larger still stands behind a rate raised
    report(run, Finding("activations", "scaled_loss", 9, 0, "100x", {"scale": 100.0}, "note"))
    assert "`scaled_loss`" in earlier_cause(run, "divergence", figures=jumped)
    # a divergence without a cause of its own still names the freeze behind it
    plain = Run()
    report(plain, Finding("activations", "frozen_batch_norm", 8, 0, "BatchNorm frozen"))
    report(plain, Finding("activations", "divergence", 160, 3, "overshoots", {"lr": 0.5}))
    assert "`frozen_batch_norm`" in earlier_cause(plain, "not_learning")


def test_root_causes_earlier_cause_names_weights_initialised_far_too_large_behind_chance():
    # held-out hunt 124: every weight x5, the first loss 72 (55x ln 10), the net at chance
    # since: `not_learning` named no cause; exploding gradients later in a run are no cause
    run = Run()
    report(run, Finding("activations", "exploding_gradients", 60, 1, "grew", {"ratio": 1e4}))
    assert earlier_cause(run, "not_learning") == ""
    report(run, Finding("activations", "exploding_gradients", 4, 0, "72", {"over_chance": 55.0}))
    said = earlier_cause(run, "not_learning")
    assert "(step 4, `exploding_gradients`): the activations started far too large at" in said
    assert earlier_cause(run, "overfitting") == ""  # a cause of a model at chance only
