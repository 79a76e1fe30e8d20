"""The fixed-spot shortcut rule on synthetic CAMs: a cue at one place vs CAMs on the objects."""

import math

import pytest
import torch
import torch.nn.functional as F

from lightning_cnnviz.core.findings import checks_of, findings_of
from lightning_cnnviz.gradcam.callback import GradCAMMonitor
from lightning_cnnviz.gradcam.fixed_spot import (
    AGREE_GAP,
    AGREE_MIN,
    agreement,
    content_maps,
    fixed_blocker,
    fixed_findings,
    grid_agreements,
    region,
)


def blobs(centres, size=32, radius=3.0, noise=0.0, seed=0):
    """One soft blob per (row, column) centre: (N, size, size)."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    maps = torch.stack([torch.exp(-((yy - r) ** 2 + (xx - c) ** 2) / (2 * radius**2))
                        for r, c in centres])  # fmt: skip
    return maps + noise * torch.rand(maps.shape, generator=g)


def scene(centres, size=32, background=0.6, seed=0):
    """Coloured squares at ``centres`` on a bright textured backdrop: (N, 3, size, size)."""
    g = torch.Generator().manual_seed(seed)
    images = background + 0.08 * torch.randn(len(centres), 3, size, size, generator=g)
    for i, (r, c) in enumerate(centres):
        images[i, :, r - 3 : r + 3, c - 3 : c + 3] = torch.rand(3, 1, 1, generator=g)
    return images.clamp(0, 1)


def moving(n=8, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [tuple(v) for v in torch.randint(6, size - 6, (n, 2), generator=g).tolist()]


def upsampled(maps, hw=(8, 8)):
    """A CAM as the monitor hands it over: computed on an ``hw`` grid, upsampled bilinearly."""
    coarse = F.adaptive_avg_pool2d(maps.unsqueeze(1), hw)
    return F.interpolate(coarse, size=maps.shape[-2:], mode="bilinear").squeeze(1)


def test_fixed_spot_cams_on_one_corner_found_with_region():
    centres, labels = moving(), torch.arange(8) % 4
    cams = upsampled(blobs([(3, 3)] * 8, noise=0.2))  # every CAM in the top-left corner
    cam, content = grid_agreements(cams, scene(centres), labels, (8, 8))
    assert cam > 0.8 and content < 0.2 and cam - content > AGREE_GAP * (1 - content)
    state = {}
    assert fixed_findings(state, (cam, content), accuracy=1.0, where=region(cams)) == []
    ((kind, message, figures),) = fixed_findings(state, (cam, content), (cam, content), 1.0,
                                                 region(cams))  # fmt: skip
    assert kind == "cam_shortcut" and figures["splits"] == "fixed"
    assert figures["region"] == "top-left corner" and "top-left corner" in message
    assert math.isclose(figures["cam_agreement"], cam) and figures["val_cam_agreement"] == cam
    assert fixed_findings(state, (cam, content), accuracy=1.0) == []  # told once per run


def test_fixed_spot_quiet_for_a_model_answering_the_probe_s_commonest_class_everywhere():
    # setups hunt 80: an untrained inception_v3 answered class 3 for all 8 probe images, 5
    # of them class 3 (62.5%, past 1.5x the 25% of four classes): every CAM is class 3's,
    # in one place, and was told a cue at a fixed place
    cams = upsampled(blobs([(3, 3)] * 8, noise=0.2))
    agree = grid_agreements(cams, scene(moving()), torch.arange(8) % 4, (8, 8))
    state = {}
    for _ in range(3):
        assert fixed_findings(state, agree, agree, 0.625, "", 4, commonest=0.625) == []
    (told,) = fixed_findings(state, agree, agree, 0.625, "", 4)  # the prior unknown: judged
    assert told[0] == "cam_shortcut"


def test_fixed_spot_cams_following_moving_objects_quiet():
    centres = moving(seed=1)
    cams = upsampled(blobs(centres, noise=0.1))  # each CAM on its own object
    cam, content = grid_agreements(cams, scene(centres, seed=1), torch.arange(8) % 4, (8, 8))
    assert cam < AGREE_MIN and abs(cam - content) < 0.3
    state = {}
    assert [fixed_findings(state, (cam, content), accuracy=1.0) for _ in range(4)] == [[]] * 4


def centred(seed):
    g = torch.Generator().manual_seed(seed)
    return [(16 + int(dr), 16 + int(dc)) for dr, dc in torch.randint(-2, 3, (8, 2), generator=g)]


def test_fixed_spot_centred_objects_agree_on_both_quiet():
    cams = upsampled(blobs(centred(0), radius=4.0))  # healthy CAMs on centred objects agree...
    cam, content = grid_agreements(cams, scene(centred(0)), torch.arange(8), (8, 8))
    assert cam > AGREE_MIN and content > AGREE_MIN  # ...and so do the images themselves
    assert cam - content < AGREE_GAP * (1 - content)
    for seed in range(4):  # small low-contrast squares can agree less: the centre is no cue
        cams = upsampled(blobs(centred(seed), radius=4.0))
        pair = grid_agreements(cams, scene(centred(seed), seed=seed), torch.arange(8), (8, 8))
        state, where = {}, region(cams)
        assert where == "centre"
        found = [fixed_findings(state, pair, accuracy=1.0, where=where) for _ in range(4)]
        assert found == [[]] * 4


def test_fixed_spot_quiet_while_probe_mostly_wrong_and_run_restarts():
    state = {}
    assert fixed_findings(state, (0.9, 0.1), accuracy=0.9) == []
    assert fixed_findings(state, (0.9, 0.1), accuracy=0.25) == []  # skipped: no state change
    assert state["fixed_run"] == 1
    assert fixed_findings(state, (0.2, 0.1), accuracy=1.0) == []  # the run of logs breaks
    assert fixed_findings(state, (0.9, 0.1), accuracy=1.0) == []
    assert len(fixed_findings(state, (0.9, 0.1), accuracy=1.0)) == 1
    assert fixed_findings({}, (math.nan, 0.1)) == fixed_findings({}, None) == []


def test_fixed_spot_two_classes_needs_the_probe_above_chance():
    # held out: a healthy 1-vs-7 digit net on 80/20 data answered "1" to every image at its
    # first logs (half of a balanced probe right), every CAM on one spot (0.94 vs 0.76)
    state = {}
    assert [fixed_findings(state, (0.94, 0.76), accuracy=0.5, classes=2) for _ in range(3)] == [
        []
    ] * 3
    assert state.get("fixed_run", 0) == 0  # skipped, as if the logs had not happened
    assert fixed_findings(state, (0.94, 0.76), accuracy=0.75, classes=2) == []
    ((kind, _, figures),) = fixed_findings(state, (0.94, 0.76), accuracy=0.75, classes=2)
    assert (kind, figures["splits"]) == ("cam_shortcut", "fixed")
    # ten classes: half of the probe right is five times chance, judged as before
    assert fixed_findings({}, (0.94, 0.76), (0.94, 0.8), accuracy=0.5, classes=10) != []


def test_fixed_spot_agreement_uses_pairs_of_different_classes_and_skips_blank_maps():
    maps = torch.zeros(4, 9)
    maps[0, 0] = maps[1, 0] = 1.0  # class 0 twice at one spot
    maps[2, 4] = maps[3, 8] = 1.0  # classes 1 and 2 elsewhere
    every = float(agreement(maps))
    across = float(agreement(maps, torch.tensor([0, 0, 1, 2])))
    assert math.isclose(across, -0.125) and every > across  # the same-class pair left out
    with_blank = torch.cat([maps, torch.zeros(1, 9)])
    assert math.isclose(float(agreement(with_blank, torch.tensor([0, 0, 1, 2, 3]))), across)
    assert math.isnan(float(agreement(torch.zeros(3, 9))))


def test_fixed_spot_content_maps_and_regions_and_blocker():
    images = torch.full((1, 3, 6, 6), 0.7)
    images[0, :, 4:, :2] = torch.tensor([0.1, 0.9, 0.1])[:, None, None]
    content = content_maps(images)[0]
    assert torch.allclose(content[4:, :2], torch.tensor(1.4)) and content[:4].abs().max() < 1e-6
    cams = torch.zeros(2, 9, 9)
    cams[:, 4, 8], cams[1, 0, 0] = 1.0, 0.2
    assert region(cams) == "right edge" and region(blobs([(16, 16)])) == "centre"
    assert fixed_blocker((7, 7)) == "" and "2x2" in fixed_blocker((2, 2))
    assert "HiResCAM" in fixed_blocker(None)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_fixed_spot_monitor_says_why_a_coarse_map_is_not_judged_and_reports_once():
    run = type("Run", (), {"global_step": 0, "current_epoch": 0})()
    monitor = GradCAMMonitor()
    monitor._trainer_ref, monitor._probe_acc = run, 1.0
    monitor._spot = {"train": ((2, 2), "")}  # resnet18 on 32x32 images
    monitor._check_fixed(run, {})
    check = checks_of(run)[("GradCAMMonitor", "CAM fixed on one place")]
    assert not check.ran and "2x2 map is too coarse" in check.why
    monitor._spot = {"train": ((7, 7), "bottom edge")}
    agree = {"gradcam/train/cam_agreement": 0.9, "gradcam/train/content_agreement": 0.3,
             "gradcam/val/cam_agreement": 0.8, "gradcam/val/content_agreement": 0.2}  # fmt: skip
    for step in (10, 20, 30, 40):
        run.global_step = step
        monitor._check_fixed(run, agree)
    assert checks_of(run)[("GradCAMMonitor", "CAM fixed on one place")].ran
    (found,) = findings_of(run)
    # the val probe's CAMs (other images) on one spot too: no second log needed
    assert (found.kind, found.step, found.severity) == ("cam_shortcut", 10, "problem")
    assert found.figures["region"] == "bottom edge" and found.figures["val_cam_agreement"] == 0.8
    assert monitor.extra_state()["fixed"]["fixed_run"] == 5
    # train alone: the second log in a row
    alone = type("Run", (), {"global_step": 0, "current_epoch": 0})()
    monitor = GradCAMMonitor()
    monitor._trainer_ref, monitor._probe_acc = alone, 1.0
    monitor._spot = {"train": ((7, 7), "bottom edge")}
    for step in (10, 20, 30):
        alone.global_step = step
        monitor._check_fixed(alone, agree | {"gradcam/val/cam_agreement": 0.3})
    assert [f.step for f in findings_of(alone)] == [20]
