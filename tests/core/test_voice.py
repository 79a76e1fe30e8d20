"""How the monitors speak: every warning a ``CnnvizWarning``, and never an error."""

import logging
import warnings

from lightning_cnnviz import CnnvizWarning, findings_of
from lightning_cnnviz.presets import callbacks
from tests.monitors import TinyCNN, loaders, trainer_for


def test_voice_warnings_made_errors_never_abort_the_run(tmp_path, caplog):
    # held out (setups hunt 22): under `python -W error` (pytest's `filterwarnings =
    # error`) a finding's warning raised out of `on_train_start` and `fit` died; another
    # became "OverfittingMonitor failed" and the monitor stepped aside
    train, _ = loaders()
    monitors = callbacks("standard")
    trainer = trainer_for(tmp_path, monitors, max_epochs=2)
    with warnings.catch_warnings(), caplog.at_level(logging.WARNING, "lightning_cnnviz"):
        warnings.simplefilter("ignore")
        warnings.simplefilter("error", CnnvizWarning)
        trainer.fit(TinyCNN(), train, train)  # the training set as val: a problem at step 0
    assert trainer.global_step > 0 and not [m for m in monitors if m.disabled]
    assert all(m.events > 0 for m in monitors)
    (leak,) = [f for f in findings_of(trainer) if f.kind == "val_is_train"]
    said = [r.getMessage() for r in caplog.records if r.name == "lightning_cnnviz"]
    assert any(m.startswith(leak.message) for m in said)


def test_voice_warnings_are_cnnviz_warnings_users_can_filter(tmp_path):
    train, _ = loaders()
    trainer = trainer_for(tmp_path, callbacks("standard"), max_epochs=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(TinyCNN(), train, train)
    ours = [w for w in caught if issubclass(w.category, CnnvizWarning)]
    assert any("The validation data are the training data" in str(w.message) for w in ours)
