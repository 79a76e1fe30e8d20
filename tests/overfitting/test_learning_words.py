"""``learning_words``: a withdrawn `not_learning` is never "above it again" inside the band.

Held out (hunt 119): 100 classes, 70% of the training labels random; the net memorised
them (train accuracy 7% -> 98%) while val stayed at chance (val probe 2.3% of 128 images,
band 3.6%; logged 3.2% of 1000) and was told "above it again at epoch 23 (2.3%)".
"""

from lightning_cnnviz.overfitting.detector import Detector
from lightning_cnnviz.overfitting.evaluation import Evaluation
from lightning_cnnviz.overfitting.headlines import headline

ROW = {"probe_size": 128.0, "classes": 100.0, "val_images": 1000.0, "val_major": 0.015}
# (train accuracy, logged val accuracy, val probe accuracy, val loss)
RUN = [(0.013, 0.011, 0.008, 4.57), (0.029, 0.033, 0.031, 4.53), (0.049, 0.046, 0.031, 4.6),
       (0.068, 0.02, 0.023, 4.5), (0.098, 0.022, 0.023, 4.8), (0.117, 0.009, 0.008, 4.9),
       (0.144, 0.009, 0.016, 4.72), (0.185, 0.011, 0.016, 5.9), (0.253, 0.015, 0.008, 5.74),
       (0.40, 0.01, 0.008, 9.1), (0.48, 0.01, 0.008, 11.0), (0.56, 0.032, 0.023, 7.4),
       (0.979, 0.018, 0.016, 9.5)]  # fmt: skip
# learnt past halfway first where the logged 3.2% is past chance on its 1000 images


def test_learning_words_withdrawal_inside_the_chance_band_is_never_above_it_again():
    detector, said = Detector(), []
    for e, (train, val, probe, loss) in enumerate(RUN):
        ev = Evaluation(24 * (e + 1), e, train_acc=train, val_acc=val, probe_acc_val=probe,
                        val_loss=loss, probe_loss_val=loss, train_loss=4.6 * (1 - train),
                        **ROW)  # fmt: skip
        said += [(c.verdict, headline(c.verdict)) for c in detector.update(ev)]
    assert ("not_learning", "problem") in [(v.kind, v.severity) for v, _ in said]
    assert not any("above it again" in text for _, text in said)
    note = [t for v, t in said if v.kind == "not_learning"][-1]  # withdrawn at 312
    assert note.startswith("Val accuracy at chance since epoch 3 (step 96), but training images")
    assert detector.reported["generalisation_gap"].severity == "problem"
