"""The compatibility matrix, logger x package name: what each monitor writes where.

Every monitor (strict, so a failure fails the test) trains once with each logger
(TensorBoard, CSV, W&B offline, MLflow file store, none) of each Lightning package
(``lightning.pytorch``, ``pytorch_lightning``); what reached the logger is read back
from its own files (``tests/loggers.py``) and counted per monitor. The table in
``docs/compatibility.md`` is generated from these counts: run with
``CNNVIZ_WRITE_COMPAT=1`` to rewrite it; otherwise the test checks it is current.
"""

import os
import warnings
from pathlib import Path

import pytest
import torch

from tests.loggers import LOGGERS, NAMESPACES, finish, make_logger, model_for, package, written
from tests.monitors import ALL_MONITORS, loaders, make_monitor, section

DOC = Path(__file__).resolve().parents[1] / "docs" / "compatibility.md"
TITLES = {"tensorboard": "TensorBoard", "csv": "CSV", "wandb": "W&B (offline)",
          "mlflow": "MLflow (file store)", "none": "`logger=False`"}  # fmt: skip


def _fit(kind: str, namespace: str, root: Path) -> dict:
    logger = make_logger(kind, namespace, root)
    torch.manual_seed(0)  # the same model in every cell (misclassified samples depend on it)
    monitors = [make_monitor(n, strict=True) for n in ALL_MONITORS]
    monitors[ALL_MONITORS.index("ActivationMonitor")] = make_monitor(
        "ActivationMonitor", strict=True, histograms=True
    )
    trainer = package(namespace).Trainer(
        default_root_dir=root, logger=logger, callbacks=monitors, max_epochs=1,
        limit_train_batches=4, limit_val_batches=1, num_sanity_val_steps=0,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model_for(namespace), *loaders())
    finish(logger)
    got = written(kind, root)
    assert all(m.events >= 1 and not m.disabled for m in monitors)
    return {name: _counts(got, section(name)) for name in ALL_MONITORS}


def _counts(got: dict, sec: str) -> tuple[int, int, int, int]:
    """(images, texts, scalars, TensorBoard-only records) tags of one monitor's section."""
    mine = [t for t in got["images"] if t.startswith(sec + "/")]
    text = [t for t in got["text"] if t.startswith((sec + "/", sec + "_"))]
    scalars = [t for t in got["scalars"] if t.startswith(sec + "/")]
    extra = [t for t in got.get("histograms", set()) | got.get("projector", set())]
    return len(mine), len(text), len(scalars), len([t for t in extra if t.startswith(sec + "/")])


@pytest.fixture(scope="module")
def matrix(tmp_path_factory) -> dict:
    return {
        (kind, ns): _fit(kind, ns, tmp_path_factory.mktemp(f"{kind}_{ns}"))
        for kind in LOGGERS
        for ns in NAMESPACES
    }


def table(matrix: dict) -> str:
    head = "| monitor | " + " | ".join(TITLES[k] for k in LOGGERS) + " |"
    rows = [head, "|---" * (len(LOGGERS) + 1) + "|"]
    for name in ALL_MONITORS:
        cells = [_cell(matrix[(kind, NAMESPACES[0])][name]) for kind in LOGGERS]
        rows.append(f"| `{name}` | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _cell(counts: tuple[int, int, int, int]) -> str:
    words = zip(counts, ("img", "txt", "sc", "hist/proj"), strict=True)
    return " · ".join(f"{n} {what}" for n, what in words if n or what != "hist/proj")


def test_compatibility_both_packages_write_the_same(matrix):
    for kind in LOGGERS:
        assert matrix[(kind, NAMESPACES[0])] == matrix[(kind, NAMESPACES[1])], kind


# Without a logger the embedding has nowhere to go: its projector needs TensorBoard and
# its separation figure is a scalar.
GAPS = {("none", "EmbeddingMonitor")}


def test_compatibility_every_monitor_shows_something_everywhere(matrix):
    for (kind, _), per_monitor in matrix.items():
        for name, counts in per_monitor.items():
            assert (sum(counts) == 0) == ((kind, name) in GAPS), (kind, name, counts)
        if kind == "none":  # nothing records scalars without a logger
            assert all(sc == 0 for _, _, sc, _ in per_monitor.values())
        if kind != "tensorboard":  # histograms and the projector are TensorBoard's only
            assert all(extra == 0 for *_, extra in per_monitor.values())


def test_compatibility_doc_is_current(matrix):
    generated = table(matrix)
    start, end = "<!-- matrix:start -->", "<!-- matrix:end -->"
    before, rest = DOC.read_text().split(start)
    _, after = rest.split(end)
    current = f"{before}{start}\n{generated}\n{end}{after}"
    if os.environ.get("CNNVIZ_WRITE_COMPAT") == "1":
        DOC.write_text(current)
    assert DOC.read_text() == current, (
        "docs/compatibility.md is out of date: run CNNVIZ_WRITE_COMPAT=1 pytest "
        "tests/test_compatibility.py"
    )
