"""A weight decay, momentum or dropout raised mid-run, named by the rules a collapse sets off."""

from lightning_cnnviz.overfitting import levels
from lightning_cnnviz.overfitting.detector import Detector
from lightning_cnnviz.overfitting.evaluation import Evaluation
from lightning_cnnviz.overfitting.headlines import headline
from lightning_cnnviz.overfitting.learning_remedies import SET_BACK
from lightning_cnnviz.overfitting.remedies import remedies
from tests.overfitting.series import first, probe, probe_run
from tests.overfitting.test_detector_train_loss import CLIMB, CLIMB_VAL, _climb_run


def test_raised_settings_dropout_raised_before_a_collapse_is_named_as_its_cause():
    # hunt 57: dropout 0.1 -> 0.97 at step 300, val 84% -> 20-30%: "barely learning ...
    # after a collapse ... the model has hardly moved from its initialisation", no cause
    rows = [probe(0.8, 0.6, dropout=0.1), probe(0.84, 0.5, dropout=0.1),
            probe(0.25, 2.22, dropout=0.97), probe(0.27, 2.21, dropout=0.97)]  # fmt: skip
    verdict = first(levels.not_learning, probe_run(rows))
    assert verdict.figures["from_start"] is False and verdict.figures["barely"] is True
    text = headline(verdict)
    assert "the model has lost what it had learnt" in text and "hardly moved" not in text
    assert "Dropout rose from p = 0.1 to p = 0.97 before it (set during the run)" in text
    assert remedies(verdict)[0] == SET_BACK
    # the same collapse at an unchanged dropout: no setting named
    kept = [dict(row, dropout=0.1) for row in rows]
    plain = first(levels.not_learning, probe_run(kept))
    assert "rose from" not in headline(plain) and remedies(plain)[0] != SET_BACK


def test_raised_settings_a_collapse_with_the_training_loss_at_chance_names_the_batches():
    # hunt 94: labels shuffled from step 160 under label smoothing (the training loss at
    # ln 10, the rate unchanged): "not learning ... after a collapse", no cause
    rows = [
        probe(0.5, 1.4, returned_loss=1.3),
        probe(0.57, 1.2, returned_loss=1.1),
        probe(0.09, 2.32, returned_loss=2.39),
        probe(0.07, 2.29, returned_loss=2.3),
    ]
    text = headline(first(levels.not_learning, probe_run(rows)))
    assert "after a collapse (it had reached 57.0%)" in text
    assert "The training loss went to its chance level too (2.3) at a learning rate not" in text
    assert "the training batches may no longer carry the label" in text
    # the training loss still low (the model fits its batches): no such cause
    fits = [dict(row, returned_loss=0.4) for row in rows]
    assert "chance level too" not in headline(first(levels.not_learning, probe_run(fits)))


def test_raised_settings_momentum_raised_before_training_climbs_back_is_named():
    # hunt 57: SGD's momentum 0.5 -> 0.99 at step 300, the rate unchanged: "the updates
    # have grown too large", the momentum only named as a value
    told = _climb_run(CLIMB, momentum=0.5)
    assert told and "rose from" not in headline(told[0][2])
    detector, said = Detector(), []
    for e, (train, acc) in enumerate(CLIMB):
        ev = Evaluation(step=32 * (e + 1), epoch=e, train_loss=train, train_acc=acc,
                        val_acc=CLIMB_VAL[e], lr=0.01, classes=10.0,
                        momentum=0.5 if e < 4 else 0.99)  # fmt: skip
        said += [c.verdict for c in detector.update(ev)]
    verdict = said[0]
    assert verdict.kind == "unstable_training"
    text = headline(verdict)
    assert "rose from 0.5 to 0.99 before it, set during the run" in text
    assert "grown too large" not in text
    assert remedies(verdict)[0] == SET_BACK


def test_raised_settings_a_weight_decay_jump_under_the_stall_bar_is_named():
    # hunt 59: AdamW's `weight_decay` 0.02 -> 2.0 at a rate of 3e-3 (6e-5 -> 0.6% a step),
    # val 89% -> 68%, told "the updates have grown too large"
    detector, said = Detector(), []
    for e, (train, acc) in enumerate(CLIMB):
        ev = Evaluation(step=32 * (e + 1), epoch=e, train_loss=train, train_acc=acc,
                        val_acc=CLIMB_VAL[e], lr=3e-3, classes=10.0, momentum=0.9,
                        decay_per_step=6e-5 if e < 4 else 6e-3)  # fmt: skip
        said += [c.verdict for c in detector.update(ev)]
    text = headline(said[0])
    assert "Weight decay rose from 0.01% to 0.6% of every weight a step" in text
    assert remedies(said[0])[0] == SET_BACK


def test_raised_settings_a_decay_raised_before_the_lowest_loss_is_named():
    # hunt 61: AdamW's `weight_decay` 0.05 -> 5 at step 300 (0.005% -> 0.5% a step); a decay
    # acts slowly, the lowest training loss came after it, and the climb from there was told
    # "the updates have grown too large"
    detector, said = Detector(), []
    for e, (train, acc) in enumerate(CLIMB):  # the lowest loss at the fourth evaluation
        ev = Evaluation(step=32 * (e + 1), epoch=e, train_loss=train, train_acc=acc,
                        val_acc=CLIMB_VAL[e], lr=1e-3, classes=10.0, momentum=0.9,
                        decay_per_step=5e-5 if e < 2 else 5e-3)  # fmt: skip
        said += [c.verdict for c in detector.update(ev)]
    verdict = said[0]
    assert verdict.kind == "unstable_training" and verdict.best.epoch == 3
    text = headline(verdict)
    assert "Weight decay rose from 0.01% to 0.5% of every weight a step" in text
    assert "grown too large" not in text and remedies(verdict)[0] == SET_BACK
