from torch import nn

from tests.monitors import (
    ALL_MONITORS,
    TinyCNN,
    failures,
    fit,
    make_monitor,
    section,
    written_tags,
)


class BuiltLate(TinyCNN):
    """TinyCNN whose layers exist only once Lightning calls ``configure_model``."""

    def __init__(self) -> None:
        super().__init__()
        self.built = {n: getattr(self, n) for n in ("conv1", "bn1", "conv2", "bn2", "fc")}
        for name in self.built:
            setattr(self, name, None)

    def configure_model(self) -> None:
        for name, module in self.built.items():
            if getattr(self, name) is None:
                setattr(self, name, module)

    def configure_optimizers(self):
        assert isinstance(self.conv1, nn.Conv2d)  # built by now
        return super().configure_optimizers()


def test_monitor_configure_model_layers_are_found_at_fit_start(tmp_path):
    # held out: a model built in configure_model (called after the callbacks' setup) left
    # Activation and Kernel "found no layer it can watch", FeatureMap and GradCAM failing
    monitors = [make_monitor(name) for name in ALL_MONITORS]
    _, _, messages = fit(tmp_path, monitors, model=BuiltLate())
    tags = written_tags(tmp_path)
    for monitor in monitors:
        name = type(monitor).__name__
        assert not failures(messages, name) and not monitor.disabled, name
        assert monitor.events > 0, name
        if monitor.watches_layers:
            assert monitor.selected, name
            written = {t for kind in ("images", "scalars") for t in tags[kind]}
            assert any(t.startswith(section(name) + "/") for t in written), name
    assert not [m for m in messages if "found no layer" in m]
