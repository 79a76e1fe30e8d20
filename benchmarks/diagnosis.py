"""The diagnosis scoreboard: is each failure found, in time, with the right cause, and are
healthy runs left alone?

Trains every run of ``scenarios.py`` (5 healthy runs of different architectures and
optimisers, 11 planted or natural failures) with ``callbacks("standard")`` at its defaults,
measures each run's ground-truth onset itself (``truth.py``, independent of the monitors)
and scores what the monitors reported (``findings_of``):

* ``found``: the first problem (not note) whose kind names the run's cause, and its step;
* ``delay``: the monitor's logging events (validations, for validation signals) between
  the onset and that finding: 0 = at the first event at or after the onset, 1 = at the
  next one. On time: at most 1;
* ``false alarms``: findings of severity ``problem`` that name another cause (on a healthy
  run: any problem). Notes are listed, never counted as alarms.

Usage::

    python benchmarks/diagnosis.py [--only NAME_PART] [--seeds 0,1,2] [--quick]
    python benchmarks/diagnosis.py --table   # docs/diagnosis.md's table from the results

Every run is trained once per seed (three by default: a rule tuned on one noise
realisation of a validation curve fails on the next). Prints one scoreboard per seed and
the totals, and writes ``benchmarks/results/diagnosis.json``. Runs on 2 CPU cores with 1
intra-op thread in under 20 minutes (``--quick``: shorter runs, a check that the harness
works, not a score).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scenarios import Scenario, digits_source, scenarios
from truth import Truth, onset

from lightning_cnnviz import findings_of
from lightning_cnnviz.presets import callbacks

RESULTS = Path(__file__).resolve().parent / "results" / "diagnosis.json"

# The finding kinds that name each cause.
CAUSE_KINDS: dict[str, set[str]] = {
    "overfitting": {"overfitting"},
    "memorisation": {"memorisation"},
    "not_learning": {"not_learning"},
    "divergence": {"divergence"},
    "vanishing_gradients": {"vanishing_gradients"},
    "bn_mismatch": {"bn_mismatch"},
    "shortcut": {"cam_shortcut", "cam_off_object", "shortcut"},
    "dead_units": {"dead_units"},
}
# Findings that agree with a cause without naming it (not false alarms in that run):
# a diverged or vanishing run does not learn.
CONSISTENT: dict[str, set[str]] = {
    "divergence": {"not_learning"},
    "vanishing_gradients": {"not_learning", "saturated_activations"},
    "not_learning": set(),
    "memorisation": {"overfitting", "generalisation_gap"},
    "overfitting": {"memorisation", "generalisation_gap"},
    "shortcut": {"generalisation_gap"},  # a cue only training images carry opens one
}
VALIDATION_CAUSES = {"overfitting", "memorisation", "bn_mismatch"}


def run(scenario: Scenario, seed: int, quick: bool, root: Path) -> dict[str, Any]:
    """Train one scenario with the standard monitors and score what they said."""
    L.seed_everything(seed, verbose=False)
    monitors = callbacks("standard")
    truth = Truth(monitors, scenario.onset)
    trainer_args = dict(scenario.trainer)
    if quick:
        trainer_args["max_epochs"] = min(2, trainer_args.get("max_epochs", 2))
    trainer = L.Trainer(
        default_root_dir=root, logger=TensorBoardLogger(root, name=f"run{seed}"),
        callbacks=[*monitors, *scenario.callbacks(), truth], enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False, num_sanity_val_steps=0,
        **trainer_args,
    )  # fmt: skip
    start = time.perf_counter()
    trainer.fit(scenario.model(), scenario.data(seed))
    seconds = time.perf_counter() - start
    step, how = onset(truth, scenario.onset, scenario.onset_step)
    # each finding as first reported (rules update theirs as a failure worsens), then as it ended
    found = list(truth.first_seen.values())
    final = [_finding(f) for f in findings_of(trainer)]
    return {"name": scenario.name, "seed": seed, "cause": scenario.cause, "onset": step,
            "onset_how": how,
            "seconds": seconds, "steps": trainer.global_step, "findings": final,
            **score(scenario.cause, step, found, truth)}  # fmt: skip


def _finding(f: Any) -> dict[str, Any]:
    return {"source": f.source, "kind": f.kind, "severity": getattr(f, "severity", "problem"),
            "step": f.step, "epoch": f.epoch, "message": f.first_line[:160]}  # fmt: skip


def score(cause: str | None, step: int | None, found: list[dict], truth: Truth) -> dict[str, Any]:
    """First right finding, its delay in events, and the false alarms (see the module doc)."""
    right = CAUSE_KINDS.get(cause, set()) if cause else set()
    ok = right | CONSISTENT.get(cause, set()) if cause else set()
    alarms = [f for f in found if f["severity"] == "problem" and f["kind"] not in ok]
    hit = next((f for f in found if f["kind"] in right and f["severity"] == "problem"), None)
    out: dict[str, Any] = {"first": hit, "false_alarms": alarms, "delay": None, "on_time": None}
    if cause is None:
        out["on_time"] = not alarms
        return out
    if hit is None or step is None:
        out["on_time"] = False
        return out
    if cause in VALIDATION_CAUSES:  # count validations
        events = [v["step"] for v in truth.validations]
    else:
        events = truth.events.get(_monitor_of(hit["source"]), [])
    after = [s for s in events if s >= step]
    out["delay"] = sum(1 for s in after if s < hit["step"]) if hit["step"] >= step else -1
    out["on_time"] = 0 <= out["delay"] <= 1 or (out["delay"] == -1 and hit["step"] >= step - 1)
    return out


def totals(results: list[dict[str, Any]]) -> str:
    """One line: runs right and in time, failures in time, quiet healthy runs, false alarms."""
    good = sum(1 for r in results if r["on_time"])
    failures = [r for r in results if r["cause"]]
    healthy = [r for r in results if not r["cause"]]
    return (f"right and in time: {good}/{len(results)}; failures found in time "
            f"{sum(r['on_time'] for r in failures)}/{len(failures)}; healthy runs without a "
            f"problem {sum(r['on_time'] for r in healthy)}/{len(healthy)}; false alarms "
            f"{sum(len(r['false_alarms']) for r in results)}")  # fmt: skip


def _monitor_of(source: str) -> str:
    names = {"activations": "ActivationMonitor", "gradcam": "GradCAMMonitor",
             "overfitting": "OverfittingMonitor", "kernels": "KernelMonitor",
             "feature_maps": "FeatureMapMonitor"}  # fmt: skip
    return names.get(source, source)


def print_board(results: list[dict[str, Any]], details: bool = True) -> None:
    """The scoreboard, one row per run, then the totals (and each run's findings)."""
    rows = [["run", "cause", "onset", "first finding (severity, step)", "delay", "ok",
             "false alarms"]]  # fmt: skip
    for r in results:
        first = r["first"]
        hit = f"{first['kind']} ({first['severity']}, {first['step']})" if first else "-"
        alarms = ", ".join(f"{a['kind']}@{a['step']}" for a in r["false_alarms"]) or "0"
        onset_text = "-" if r["onset"] is None else str(r["onset"])
        rows.append([r["name"], r["cause"] or "healthy", onset_text, hit,
                     "-" if r["delay"] is None else str(r["delay"]),
                     "yes" if r["on_time"] else "NO", alarms])  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        print(" | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
        if i == 0:
            print("-+-".join("-" * w for w in widths))
    print(f"\n{totals(results)}")
    for r in results if details else []:
        print(f"\n{r['name']}: onset {r['onset_how']}; {r['steps']} steps, {r['seconds']:.0f} s")
        for f in r["findings"]:
            print(f"  [{f['severity']}] {f['source']}/{f['kind']} step {f['step']}: {f['message']}")


def markdown_table(results: list[dict[str, Any]]) -> str:
    """The scoreboard as docs/diagnosis.md shows it: one row per run, one column per seed."""
    seeds = sorted({r["seed"] for r in results})
    names = list(dict.fromkeys(r["name"] for r in results))
    by = {(r["name"], r["seed"]): r for r in results}
    cells = " | ".join(f"seed {s}: onset -> first problem (delay)" for s in seeds)
    lines = [f"| run | cause | {cells} |", "|---|---|" + "---|" * len(seeds)]
    for name in names:
        row = [by.get((name, s)) for s in seeds]
        cause = next((r["cause"] for r in row if r), None) or "healthy"
        out = []
        for r in row:
            if r is None:
                out.append("-")
            elif not r["cause"]:
                alarms = ", ".join(f"{a['kind']}@{a['step']}" for a in r["false_alarms"])
                out.append("quiet" if not alarms else f"{alarms} **NO**")
            else:
                first = r["first"]
                hit = f"{first['kind']} @{first['step']} ({r['delay']})" if first else "none"
                out.append(f"{r['onset']} -> {hit}" + ("" if r["on_time"] else " **NO**"))
        lines.append(f"| {name} | {cause} | " + " | ".join(out) + " |")
    return "\n".join(lines) + f"\n\nAll seeds: {totals(results)}."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="run the scenarios whose name contains this")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds, one run each")
    parser.add_argument("--quick", action="store_true", help="shorter runs: a harness check")
    parser.add_argument("--table", action="store_true",
                        help="print the markdown table of the saved results and exit")  # fmt: skip
    args = parser.parse_args()
    if args.table:
        print(markdown_table(json.loads(RESULTS.read_text())["runs"]))
        return
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"digits: {digits_source()}", flush=True)  # the onsets differ between the two
    start, results = time.perf_counter(), []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            for scenario in scenarios():
                if args.only.lower() in scenario.name.lower():
                    results.append(run(scenario, seed, args.quick, Path(tmp)))
                    print(f"done: {scenario.name}, seed {seed} ({results[-1]['seconds']:.0f} s)",
                          flush=True)  # fmt: skip
    for seed in seeds:
        print(f"\n## seed {seed}\n")
        print_board([r for r in results if r["seed"] == seed], details=len(seeds) == 1)
    minutes = (time.perf_counter() - start) / 60
    print(f"\nall seeds ({', '.join(map(str, seeds))}): {totals(results)}\n{minutes:.1f} min")
    if not args.quick and not args.only:
        RESULTS.write_text(json.dumps({"seeds": seeds, "minutes": minutes,
                                       "digits": digits_source(), "runs": results},
                                      indent=1, default=str))  # fmt: skip


if __name__ == "__main__":
    main()
