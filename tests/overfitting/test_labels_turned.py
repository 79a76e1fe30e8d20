"""Training labels turned noisy during the run: told as memorisation, not unstable training."""

from lightning_cnnviz.overfitting.detector import Detector
from lightning_cnnviz.overfitting.evaluation import Evaluation
from lightning_cnnviz.overfitting.headlines import headline
from lightning_cnnviz.overfitting.labels_turned import labels_turned
from lightning_cnnviz.overfitting.remedies import remedies

# hunt 61: 40% of the labels random from step 150 (validations every 25 steps): the train
# loss steps from 0.03 to 2.4, train accuracy 97% -> 44-72%, val accuracy 96% -> 88-80%
FIT = [(1.21, 0.84, 0.90), (0.27, 0.97, 0.92), (0.17, 1.0, 0.95), (0.09, 0.97, 0.95),
       (0.05, 1.0, 0.96), (0.03, 0.97, 0.96)]  # fmt: skip
NOISY = [(2.41, 0.44, 0.61), (1.80, 0.62, 0.88), (1.58, 0.5, 0.90), (1.56, 0.69, 0.90),
         (1.55, 0.56, 0.88), (1.40, 0.62, 0.89), (1.43, 0.56, 0.88), (1.41, 0.59, 0.89),
         (1.33, 0.72, 0.83)]  # fmt: skip


def told(rows):
    """Each problem the detector tells on ``rows`` of (train loss, train acc, val acc)."""
    detector, said = Detector(), []
    for i, (loss, train, val) in enumerate(rows):
        ev = Evaluation(25 * (i + 1), i // 4, train_loss=loss, train_acc=train, val_acc=val,
                        lr=1e-3, classes=10.0, val_images=1000.0)  # fmt: skip
        said += [(ev.step, c.verdict) for c in detector.update(ev) if c.change == "new"]
    return [(step, v) for step, v in said if v.severity == "problem"]


def test_labels_turned_is_told_as_memorisation_at_the_second_evaluation_after():
    problems = told([*FIT, *NOISY])
    assert [(step, v.kind) for step, v in problems] == [(200, "memorisation")]
    v = problems[0][1]
    assert v.figures["turned"] and v.since.step == 175 and v.best.step == 150
    words = headline(v)
    assert words.startswith("Training labels turned noisy since epoch 1 (step 175)")
    assert "stepped up from 0.03 (epoch 1 (step 150)) to 1.8" in words
    assert "train accuracy fell to 62.0%, below val accuracy (88.0%; 96.0% then)" in words
    assert remedies(v)[0].startswith("**Check the training labels**")


def test_labels_turned_not_where_val_accuracy_holds_or_the_loss_is_at_chance():
    # MixUp switched on: the train loss and train accuracy (against hard labels) fall
    # back, val accuracy holds: a harder target on purpose
    mixup = [(1.2, 0.55, 0.95), (1.1, 0.6, 0.96), (1.05, 0.62, 0.96), (1.0, 0.63, 0.96)]
    assert told([*FIT, *mixup]) == []
    # CutMix switched on (hunt 63): val accuracy holds, dips once (96% -> 90%), then back
    cutmix = [(1.2, 0.55, 0.95), (1.1, 0.6, 0.90), (1.05, 0.62, 0.96), (1.0, 0.63, 0.96)]
    assert told([*FIT, *cutmix]) == []
    # every label random: the loss at its chance level is not learning, not noisy labels
    random = [(2.31, 0.1, 0.8), (2.30, 0.11, 0.7), (2.30, 0.1, 0.6)]
    evs = [Evaluation(25 * (i + 1), 0, train_loss=loss, train_acc=t, val_acc=v, lr=1e-3,
                      classes=10.0, val_images=1000.0)
           for i, (loss, t, v) in enumerate([*FIT, *random])]  # fmt: skip
    assert labels_turned(evs) is None
