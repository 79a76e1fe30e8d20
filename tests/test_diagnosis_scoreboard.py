"""The scoreboard harness of ``benchmarks/diagnosis.py``: ground-truth onsets and scoring."""

import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from diagnosis import markdown_table, score
from truth import Truth, onset


def _truth(kind, val_losses=(), val_accs=(), train_accs=(), losses=()):
    truth = Truth([], kind)
    truth.losses = list(losses)
    for i, loss in enumerate(val_losses):
        acc = val_accs[i] if val_accs else math.nan
        train = train_accs[i] if train_accs else math.nan
        record = {"step": 10 * (i + 1), "epoch": i, "val_loss": loss, "val_acc": acc}
        truth.validations.append(record | {"train_acc": train})
    return truth


def test_onset_of_overfitting_is_the_first_lasting_rise():
    truth = _truth("val_loss_up", [1.0, 0.6, 0.5, 0.54, 0.49, 0.55, 0.6, 0.7])
    step, how = onset(truth, "val_loss_up", None)
    assert step == 60 and "best 0.490 at epoch 4" in how  # the bump at epoch 3 came back


def test_onset_of_memorisation_is_the_lasting_fall_of_val_accuracy():
    truth = _truth(
        "val_acc_down", [1] * 6, [0.5, 0.7, 0.8, 0.79, 0.75, 0.7], [0.5, 0.7, 0.85, 0.9, 0.95, 0.99]
    )
    assert onset(truth, "val_acc_down", None)[0] == 50


def test_onset_of_divergence_is_the_first_non_finite_or_spiking_loss():
    assert (
        onset(_truth("nonfinite", losses=[2.3, 2.0, 1.9, float("nan")]), "nonfinite", None)[0] == 3
    )
    assert onset(_truth("nonfinite", losses=[2.3, 2.0, 7.5, 2.2]), "nonfinite", None)[0] == 2
    assert onset(_truth("nonfinite", losses=[2.3, 2.0, 1.0]), "nonfinite", None)[0] is None


def _finding(kind, step, severity="problem", source="activations"):
    return {"kind": kind, "step": step, "severity": severity, "source": source}


def test_score_counts_events_between_onset_and_finding():
    truth = _truth("step")
    truth.events["ActivationMonitor"] = [10, 20, 60, 120, 180]
    on_time = score("dead_units", 100, [_finding("dead_units", 120)], truth)
    assert on_time["delay"] == 0 and on_time["on_time"]
    late = score("dead_units", 50, [_finding("dead_units", 180)], truth)
    assert late["delay"] == 2 and not late["on_time"]


def test_score_on_a_healthy_run_counts_problems_not_notes():
    truth = _truth(None)
    quiet = score(None, None, [_finding("dead_units", 20, "note")], truth)
    assert quiet["on_time"] and not quiet["false_alarms"]
    alarmed = score(None, None, [_finding("dead_units", 20)], truth)
    assert not alarmed["on_time"] and len(alarmed["false_alarms"]) == 1


def test_score_wrong_cause_is_a_false_alarm_and_not_a_hit():
    truth = _truth("start")
    truth.events["ActivationMonitor"] = [10, 20]
    result = score("divergence", 0, [_finding("dead_units", 10)], truth)
    assert result["first"] is None and not result["on_time"]
    assert [a["kind"] for a in result["false_alarms"]] == ["dead_units"]


def test_markdown_table_one_row_per_run_one_column_per_seed():
    truth = _truth("step")
    truth.events["ActivationMonitor"] = [10, 20, 60, 120, 180]
    runs = []
    for seed, found in ((0, 120), (1, 180)):
        result = score("dead_units", 100, [_finding("dead_units", found)], truth)
        runs.append(result | {"name": "planted", "seed": seed, "cause": "dead_units", "onset": 100})
    healthy = score(None, None, [_finding("dead_units", 20)], _truth(None))
    runs.append(healthy | {"name": "healthy", "seed": 0, "cause": None, "onset": None})
    lines = markdown_table(runs).splitlines()
    assert lines[0] == (
        "| run | cause | seed 0: onset -> first problem (delay) "
        "| seed 1: onset -> first problem (delay) |"
    )
    assert lines[2] == (
        "| planted | dead_units | 100 -> dead_units @120 (0) | 100 -> dead_units @180 (1) |"
    )
    assert lines[3] == "| healthy | healthy | dead_units@20 **NO** | - |"
    assert lines[-1].startswith("All seeds: right and in time: 2/3;")
