"""``bn_levels``: batch statistics that read "the model learns" only past chance themselves.

Held out (hunt 119): training labels randomised from epoch 5 under a BatchNorm CNN; the
val probe at chance in both modes, eval mode 6.2% and batch statistics 15.6% at epoch 8
(10 classes, band 18%), told "the model learns" and the standing `not_learning` withdrawn.
"""

from lightning_cnnviz.overfitting import bn_levels
from lightning_cnnviz.overfitting.detector import Detector
from lightning_cnnviz.overfitting.evaluation import Evaluation
from lightning_cnnviz.overfitting.headlines import headline

ROW = {"probe_size": 128.0, "classes": 10.0, "eval_only": 0.0}
LEARNT = [(0.39, 0.29), (0.39, 0.57), (0.76, 0.76), (0.82, 0.86), (0.82, 0.915)]
# from epoch 5 (val probe in eval mode, with batch statistics): at chance in both
RANDOM = [(0.148, 0.14), (0.133, 0.13), (0.103, 0.11), (0.062, 0.156), (0.123, 0.13)]


def rows():
    for e, (val, train) in enumerate(LEARNT):
        yield Evaluation(47 * (e + 1), e, val_acc=val, train_acc=train, val_loss=0.6,
                         train_loss=0.5, probe_acc_val=val, probe_loss_val=0.6,
                         probe_acc_bn=val, probe_loss_bn=0.6, bn_only=0.0, **ROW)  # fmt: skip
    for e, (val, bn) in enumerate(RANDOM, start=len(LEARNT)):
        yield Evaluation(47 * (e + 1), e, val_acc=val, train_acc=0.12, val_loss=2.3,
                         train_loss=2.3, probe_acc_val=val, probe_loss_val=2.31,
                         probe_acc_bn=bn, probe_loss_bn=2.30, bn_only=max(0.0, bn - val),
                         **ROW)  # fmt: skip


def test_bn_levels_batch_stats_at_chance_leave_not_learning_standing():
    detector, said = Detector(), []
    for ev in rows():
        said += [(ev.step, c.change, c.verdict) for c in detector.update(ev)]
    assert bn_levels.parted(list(rows())[8])  # the two passes part, both at chance
    assert [(s, c, v.kind) for s, c, v in said if v.kind == "not_learning"] == [
        (329, "new", "not_learning")
    ]
    assert not any("the model learns" in headline(v) for _, _, v in said)
    assert detector.reported["not_learning"].severity == "problem"


def test_bn_levels_batch_stats_past_chance_still_end_not_learning():
    e = Evaluation(423, 8, probe_acc_val=0.062, probe_acc_bn=0.45, bn_only=0.39,
                   probe_loss_bn=1.6, **ROW)  # fmt: skip
    assert bn_levels.learns_on_batch_stats(e)
