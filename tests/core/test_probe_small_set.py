from tests.monitors import ALL_MONITORS, failures, fit, loaders, make_monitor, section, written_tags


def test_probe_small_set_uses_every_item_and_says_so(tmp_path):
    # held out: a val set of 8 images under the standard preset (num_samples=16): the
    # feature maps and the activation statistics failed and stepped aside
    monitors = [make_monitor(name, num_samples=16) for name in ALL_MONITORS]
    _, _, messages = fit(tmp_path, monitors, data=loaders(n_val=8), limit_val_batches=2)
    for monitor in monitors:
        name = type(monitor).__name__
        assert not failures(messages, name) and not monitor.disabled, name
    tags = written_tags(tmp_path)
    for name in ("FeatureMapMonitor", "ActivationMonitor"):
        assert any(t.startswith(section(name) + "/") for t in tags["images"]), name
    said = [m for m in messages if "the val set holds 8 items" in m]
    assert len(said) == 1 and "the probe is all of them" in said[0]
