"""Val images unlike the training ones under BatchNorm, unseen by the per-channel screen.

Held out (hunt 117): val digits with noise of sd 0.25 (1.03x in spread, under the screen's
bars) on a BatchNorm CNN, eval mode 89-94% on training images and 41% on the val probe,
91% on it with batch statistics, were told as BatchNorm running statistics that lag, and
beside them a gap whose words led with "the model memorises its training images".
"""

from lightning_cnnviz.overfitting.evaluation import Evaluation
from lightning_cnnviz.overfitting.headlines import headline
from lightning_cnnviz.overfitting.verdict import Verdict


def test_val_shift_under_bn_gap_back_on_batch_statistics_is_no_memorising():
    now = Evaluation(160, 3)
    figures = {"train_acc": 0.922, "val_acc": 0.186, "val_at_chance": False,
               "val_acc_bn": 0.914}  # fmt: skip
    text = headline(Verdict("generalisation_gap", now, now, None, figures))
    assert "(91.4% with BatchNorm on the val batches' own statistics)" in text
    assert "memorises" not in text and "the val images differ from the training ones" in text
    lower = headline(Verdict("generalisation_gap", now, now, None, {**figures, "val_acc_bn": 0.3}))
    assert "the model memorises its training images" in lower
