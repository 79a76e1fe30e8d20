"""The prompt onset checks on real runs: within one validation of the onset, quiet when healthy.

Series recorded from ``benchmarks/scenarios.py`` runs (real MNIST digits, or the
synthetic digits it falls back to) (``OverfittingMonitor`` history;
ground-truth onsets measured by ``benchmarks/truth.py``: the first validation 5% above the
best val loss that never comes back within 2%, or 2 points below the peak val accuracy
that never comes back within 1).
"""

import pytest

from lightning_cnnviz.overfitting import memorisation, rules
from lightning_cnnviz.overfitting.detector import Detector
from lightning_cnnviz.overfitting.evaluation import Evaluation

# the suite's run (wide CNN, 300 real MNIST digits, Adam 1e-3, seed 0): best 0.2881 at
# epoch 11; onset epoch 12 (0.3071, never back). Its local noise is read without the
# turn itself (the kink at the best is a large second difference)
MNIST_0 = dict(
    val_loss=[1.7804, 1.0501, 0.6802, 0.5014, 0.4211, 0.393, 0.3629, 0.3239, 0.3111, 0.3051,
              0.2901, 0.2881, 0.3071, 0.3063, 0.3006, 0.3044],
    train_loss=[2.1793, 1.448, 0.8692, 0.6001, 0.4565, 0.3492, 0.2887, 0.1919, 0.1368, 0.0919,
                0.0654, 0.0447, 0.0315, 0.0229, 0.0175, 0.0131],
)  # fmt: skip
# the scoreboard's wide CNN on 300 MNIST digits, seed 2: best 0.426 at epoch 15, then a
# creep of 0.5% an epoch; onset epoch 24 (0.449, never back within 2%)
CREEP_2 = dict(
    val_loss=[1.965, 1.489, 0.971, 0.712, 0.614, 0.678, 0.623, 0.519, 0.508, 0.466, 0.437,
              0.437, 0.432, 0.446, 0.431, 0.426, 0.429, 0.432, 0.436, 0.445, 0.438, 0.436,
              0.444, 0.446, 0.449, 0.447, 0.457, 0.462, 0.464, 0.462],
    train_loss=[2.201, 1.691, 1.093, 0.677, 0.414, 0.361, 0.32, 0.215, 0.166, 0.138, 0.087,
                0.068, 0.047, 0.034, 0.027, 0.023, 0.016, 0.013, 0.012, 0.01, 0.008, 0.007,
                0.006, 0.006, 0.005, 0.005, 0.004, 0.004, 0.003, 0.003],
)  # fmt: skip
# 50% noisy labels on real MNIST digits, seed 1: peak 0.900 at epoch 4; onset epoch 5
MNIST_MEM_1 = dict(
    val_acc=[0.741, 0.8355, 0.8925, 0.8855, 0.9, 0.8655, 0.87, 0.835, 0.7565, 0.7635],
    train_acc=[0.2793, 0.4533, 0.4953, 0.5153, 0.532, 0.5373, 0.552, 0.5673, 0.5973, 0.606],
    val_loss=[1.2898, 1.0258, 0.7554, 0.9425, 0.8595, 0.8693, 0.8143, 0.9102, 0.9338, 0.9612],
)  # fmt: skip
# synthetic digits (below): wide CNN, 300 digits, seed 0: best 0.2788 at epoch 15; onset
# epoch 17 (0.2971)
OVER_0 = dict(
    val_loss=[1.9782, 1.3178, 0.7942, 0.6183, 0.5626, 0.5276, 0.3736, 0.3718, 0.3274, 0.3646,
              0.3382, 0.282, 0.326, 0.2942, 0.2794, 0.2788, 0.2801, 0.2971, 0.3038, 0.3008,
              0.296, 0.2962, 0.2996, 0.3039, 0.3078, 0.3058, 0.3073, 0.3097, 0.3108, 0.3118],
    train_loss=[2.2195, 1.6866, 1.024, 0.5965, 0.3939, 0.3249, 0.2211, 0.1873, 0.1805, 0.122,
                0.0793, 0.0759, 0.0365, 0.0297, 0.0206, 0.0161, 0.0113, 0.0098, 0.0085, 0.0067,
                0.006, 0.0052, 0.0045, 0.0041, 0.0037, 0.0035, 0.0032, 0.003, 0.0028, 0.0026],
)  # fmt: skip
# seed 1: best 0.2763 at epoch 10, a noisy plateau (0.278-0.297) that comes back, then a
# slow rise; onset epoch 26 (0.2939, never back below 0.2818)
OVER_1 = dict(
    val_loss=[2.1356, 1.6896, 1.1254, 0.7024, 0.472, 0.3915, 0.4339, 0.3131, 0.3333, 0.3815,
              0.2763, 0.2951, 0.2777, 0.2966, 0.28, 0.2932, 0.2914, 0.2807, 0.2807, 0.2866,
              0.2875, 0.2847, 0.2835, 0.2848, 0.2892, 0.2899, 0.2939, 0.2957, 0.2968, 0.2992],
    train_loss=[2.2863, 1.9624, 1.3596, 0.7926, 0.424, 0.3107, 0.2211, 0.2112, 0.1762, 0.0847,
                0.0864, 0.0541, 0.0418, 0.0356, 0.0269, 0.024, 0.0194, 0.0114, 0.0114, 0.0079,
                0.0067, 0.0059, 0.0052, 0.0048, 0.0043, 0.0041, 0.0037, 0.0035, 0.0032, 0.003],
)  # fmt: skip
# 1500 digits, half the labels random, seed 0: peak 0.8915 at epoch 6; onset epoch 7
MEM_0 = dict(
    val_acc=[0.7245, 0.858, 0.852, 0.8675, 0.887, 0.852, 0.8915, 0.8705, 0.842, 0.8175, 0.7995,
             0.7915, 0.7105, 0.7605, 0.7425, 0.641],
    train_acc=[0.246, 0.458, 0.4987, 0.5033, 0.5133, 0.5233, 0.53, 0.5413, 0.572, 0.5847,
               0.5913, 0.632, 0.658, 0.666, 0.7027, 0.7493],
    val_loss=[1.4648, 1.1598, 1.0076, 0.9929, 0.958, 0.9485, 0.8747, 0.8685, 0.8937, 0.9107,
              0.8703, 0.8314, 1.0005, 0.9055, 0.8813, 1.1123],
)  # fmt: skip
# seed 1: peak 0.9035 at epoch 2; onset epoch 4
MEM_1 = dict(
    val_acc=[0.632, 0.885, 0.9035, 0.8925, 0.881, 0.8515, 0.87, 0.8385, 0.824, 0.799],
    train_acc=[0.228, 0.4573, 0.5087, 0.5127, 0.5227, 0.5347, 0.5493, 0.5607, 0.5827, 0.572],
    val_loss=[1.4286, 1.0692, 0.8414, 0.8911, 0.8781, 1.0081, 0.8152, 0.8991, 0.922, 0.8739],
)  # fmt: skip
# the scoreboard's 50% noisy labels, seed 2: peak 0.8905 at epoch 4; onset epoch 5. The
# train accuracy's climb (1.7 points in two validations) is judged against its noise now,
# not the steep climb of its first epochs
MEM_2 = dict(
    val_acc=[0.7605, 0.864, 0.8525, 0.873, 0.8905, 0.8595, 0.833, 0.84, 0.816, 0.832],
    train_acc=[0.2747, 0.4713, 0.508, 0.5273, 0.546, 0.5673, 0.5633, 0.5927, 0.6013, 0.6213],
    val_loss=[1.2238, 1.0313, 0.9286, 0.9282, 0.8568, 0.8709, 0.9049, 0.8318, 0.8576, 0.8069],
)  # fmt: skip
# healthy BatchNorm CNN, AdamW, val every 1/4 epoch (train figures of single steps): val
# loss 0.0718 and 0.0723 a third above its best 0.0542, then back to 0.051
BN_QUARTER = dict(
    val_loss=[0.6012, 0.2061, 0.1585, 0.118, 0.0937, 0.0864, 0.1088, 0.0666, 0.064, 0.0662,
              0.0542, 0.0645, 0.0572, 0.0613, 0.0718, 0.0723, 0.0599, 0.0585, 0.0587, 0.0511],
    train_loss=[0.4599, 0.1614, 0.1401, 0.081, 0.0591, 0.1469, 0.0866, 0.0142, 0.0078, 0.0376,
                0.0355, 0.0068, 0.0258, 0.0134, 0.047, 0.0193, 0.0481, 0.0137, 0.067, 0.0142],
    val_acc=[0.899, 0.942, 0.956, 0.9655, 0.9735, 0.9735, 0.963, 0.977, 0.9795, 0.9785, 0.981,
             0.9775, 0.979, 0.982, 0.9775, 0.9785, 0.981, 0.977, 0.9825, 0.982],
    train_acc=[0.8281, 0.9844, 0.9375, 0.9688, 0.9844, 0.9688, 0.9531, 1.0, 1.0, 1.0, 0.9844,
               1.0, 1.0, 1.0, 0.9844, 1.0, 0.9844, 1.0, 0.9844, 1.0],
)  # fmt: skip


def run(columns):
    n = len(next(iter(columns.values())))
    return [
        Evaluation(step=5 * (e + 1), epoch=e, **{k: v[e] for k, v in columns.items()})
        for e in range(n)
    ]


def first(rule, evs):
    for i in range(1, len(evs) + 1):
        if (verdict := rule(evs[:i])) is not None:
            return verdict
    return None


@pytest.mark.parametrize(
    ("series", "onset", "best"), [(MNIST_0, 12, 11), (OVER_0, 17, 15), (OVER_1, 26, 10)]
)
def test_onset_overfitting_real_runs_within_one_validation(series, onset, best):
    verdict = first(rules.overfitting, run(series))
    assert onset <= verdict.detected.epoch <= onset + 1
    assert (verdict.best.epoch, verdict.since.epoch) == (best, best + 1)
    assert verdict.figures["rise"] > 0.05  # the tolerance: never a rise smaller than 5%


def test_onset_overfitting_slow_creep_found_by_its_trend_within_one_validation():
    # the whole run's noise (its steep start) is 3x the plateau's wiggle: the trend is
    # judged against its own scatter too
    verdict = first(rules.overfitting, run(CREEP_2))
    assert (verdict.detected.epoch, verdict.best.epoch) == (25, 15)
    assert verdict.figures["rise"] == pytest.approx(0.021 / 0.426)
    before = first(rules.overfitting, run({k: v[:25] for k, v in CREEP_2.items()}))
    assert before is None  # epoch 24: the slope's t is 4.4, under its 4.5 bar


@pytest.mark.parametrize(
    ("series", "onset", "peak"), [(MNIST_MEM_1, 5, 4), (MEM_0, 7, 6), (MEM_1, 4, 2), (MEM_2, 5, 4)]
)
def test_onset_memorisation_real_runs_within_one_validation(series, onset, peak):
    verdict = first(memorisation.memorisation, run(series))
    assert onset <= verdict.detected.epoch <= onset + 1
    assert verdict.best.epoch == peak
    figures = verdict.figures
    assert figures["drop"] > 0.02 and figures["train_acc"] > figures["train_acc_at_best"] + 0.01


def test_onset_memorisation_lower_bar_needs_val_loss_and_train_accuracy_to_agree():
    # the same fall of val accuracy, but val loss keeps falling and train accuracy is
    # flat: the agreement is missing, so the prompt bar is the noise-based one
    calm = dict(MEM_0, val_loss=[1.5 - 0.05 * i for i in range(16)], train_acc=[0.5] * 16)
    assert first(memorisation.memorisation, run(calm)) is None
    slow = dict(MEM_0, val_loss=[1.5 - 0.05 * i for i in range(16)])
    assert (
        first(memorisation.memorisation, run(slow)).detected.epoch > 8
    )  # later than with agreement


def test_onset_quiet_on_a_healthy_run_validated_every_quarter_epoch():
    evs = run(BN_QUARTER)
    assert first(rules.overfitting, evs) is None
    assert first(memorisation.memorisation, evs) is None


def test_onset_bump_then_new_low_leaves_no_lasting_finding():
    # a quiet plateau, a two-validation bump that passes the prompt check, then a new low
    vals = [1.0, 0.6, 0.4, 0.32, 0.3, 0.301, 0.299, 0.3, 0.298, 0.33, 0.335, 0.29, 0.292]
    detector = Detector()
    changes = []
    for e, v in enumerate(vals):
        ev = Evaluation(step=10 * (e + 1), epoch=e, train_loss=1.0 / (e + 1), val_loss=v)
        changes += [(e, c.change, c.verdict.severity) for c in detector.update(ev)]
    assert changes == [(10, "new", "problem"), (11, "gone", "note")]
    assert [v.severity for v in detector.active] == ["note"]


def test_onset_overfitting_waits_until_the_val_noise_is_known():
    # held out: a BatchNorm CNN under constant SGD 0.1 (its first, stale validation left
    # out); two values up from the best on three are within an unknown noise
    series = dict(
        val_loss=[0.1933, 0.2023, 0.2178, 0.1157, 0.1089, 0.0433, 0.0423],
        train_loss=[0.2057, 0.1240, 0.0876, 0.0749, 0.0444, 0.0217, 0.0114],
    )
    assert first(rules.overfitting, run(series)) is None
    # the same three values and a fourth still higher: the rise stands out of a noise read
    rising = dict(val_loss=[0.1933, 0.2023, 0.2178, 0.2600], train_loss=series["train_loss"][:4])
    assert first(rules.overfitting, run(rising)).detected.epoch == 3


def test_onset_memorisation_confirms_on_three_values_with_train_accuracy_climbing():
    # held out: a BN ResNet on 35% noisy labels (its BatchNorm-stale validations left out):
    # val 71.4% -> 65.6%, 65.8% while train accuracy went 62% -> 72% -> 79%
    series = dict(val_acc=[0.714, 0.656, 0.658], train_acc=[0.621, 0.719, 0.792],
                  val_loss=[1.06, 1.19, 1.11])  # fmt: skip
    verdict = first(memorisation.memorisation, run(series))
    assert (verdict.detected.epoch, verdict.best.epoch) == (2, 0)
    flat = dict(series, train_acc=[0.70, 0.70, 0.70])  # no second signal: no verdict
    assert first(memorisation.memorisation, run(flat)) is None


# held-out hunt 127: no BatchNorm, 256 digits, limit_train_batches / limit_val_batches 0.5
# (4 steps an epoch, 250 val images), seed 0: best 0.7226 at epoch 3 after a steep start;
# onset epoch 5 (+13%, never back), +47% at epoch 6. The whole curve's noise (0.12, the
# start's bending) hid the rise until epoch 9
LIMIT_0 = dict(
    val_loss=[2.1225, 1.6916, 1.0594, 0.7226, 0.7495, 0.8163, 1.0639, 0.9402, 0.8794, 1.0647],
    train_loss=[2.3206, 1.9849, 1.3189, 0.7093, 0.3909, 0.2218, 0.1908, 0.1612, 0.141, 0.0535],
    val_acc=[0.44, 0.564, 0.74, 0.76, 0.8, 0.792, 0.772, 0.76, 0.792, 0.776],
)  # fmt: skip


def test_onset_overfitting_soon_after_a_steep_start_within_one_validation():
    evs = run(LIMIT_0)
    verdict = first(rules.overfitting, evs)
    assert (verdict.detected.epoch, verdict.best.epoch, verdict.since.epoch) == (6, 3, 4)
    assert verdict.figures["rise"] == pytest.approx(1.0639 / 0.7226 - 1)
    # the detector tells it as a problem at that validation
    detector = Detector()
    told = [(e.epoch, c.change, c.verdict.severity) for e in evs for c in detector.update(e)]
    assert told[0] == (6, "new", "problem")
