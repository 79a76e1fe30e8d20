import pytest
import torch

from lightning_cnnviz.core import labels
from lightning_cnnviz.core import rendering as r
from lightning_cnnviz.core.inputs import Norm, to_image01


def test_rendering_normalize_modes_hand_values():
    x = torch.tensor([[[0.0, 2.0], [4.0, 8.0]], [[-1.0, -1.0], [1.0, 3.0]]])
    assert r.normalize(x, "per_image")[0].tolist() == [[0.0, 0.25], [0.5, 1.0]]
    assert r.normalize(x, "per_image")[1].tolist() == [[0.0, 0.0], [0.5, 1.0]]
    shared = r.normalize(x, "shared")  # one range -1..8 for both maps
    assert shared[0, 0, 0].item() == pytest.approx(1 / 9) and shared[1, 0, 0].item() == 0.0
    symmetric = r.normalize(x, "symmetric")  # max |x| = 8, zero at 0.5
    assert symmetric[0, 0, 0].item() == 0.5 and symmetric[1, 0, 0].item() == 0.5 - 1 / 16
    fixed = r.normalize(x, "fixed", value_range=(0.0, 4.0))
    assert fixed[0].tolist() == [[0.0, 0.5], [1.0, 1.0]] and fixed[1, 0, 0].item() == 0.0


def test_rendering_normalize_constant_and_nan_are_finite():
    for x in (torch.full((2, 5, 5), 3.0), torch.full((2, 5, 5), float("nan"))):
        for mode in ("per_image", "shared", "symmetric"):
            out = r.normalize(x, mode)
            assert torch.isfinite(out).all()
    mixed = torch.tensor([[float("nan"), float("inf")], [0.0, 1.0]])
    assert r.normalize(mixed).tolist() == [[0.0, 0.0], [0.0, 1.0]]
    assert r.to_uint8(torch.tensor([float("nan"), 0.5, 2.0])).tolist() == [0, 128, 255]


def test_rendering_normalize_rejects_unknown_mode():
    with pytest.raises(ValueError, match="`mode` must be one of"):
        r.normalize(torch.ones(2, 2), "loud")
    with pytest.raises(ValueError, match="`value_range` is required"):
        r.normalize(torch.ones(2, 2), "fixed")


@pytest.mark.parametrize(
    ("cmap", "low", "high"),
    [
        ("gray", (0, 0, 0), (255, 255, 255)),
        ("viridis", (68, 1, 84), (253, 231, 37)),
        ("inferno", (0, 0, 4), (252, 255, 164)),
        ("coolwarm", (59, 76, 192), (180, 4, 38)),
    ],
)
def test_rendering_colormap_ends_match_matplotlib(cmap, low, high):
    image = r.apply_colormap(torch.tensor([[0.0, 1.0]]), cmap)
    assert image.dtype == torch.uint8 and image.shape == (3, 1, 2)
    assert tuple(image[:, 0, 0].tolist()) == low and tuple(image[:, 0, 1].tolist()) == high


def test_rendering_colormap_tables_agree_with_matplotlib():
    matplotlib = pytest.importorskip("matplotlib")
    values = torch.linspace(0, 1, 256)
    for cmap in r.CMAPS:
        ours = r.apply_colormap(values[None], cmap)[:, 0].T.int()
        theirs = torch.tensor(matplotlib.colormaps[cmap](values.numpy())[:, :3] * 255).round().int()
        assert (ours - theirs).abs().max() <= 1, cmap  # matplotlib's own table


def test_rendering_symmetric_zero_is_coolwarm_neutral():
    signed = torch.tensor([[-3.0, 0.0, 3.0]])
    image = r.apply_colormap(r.normalize(signed, "symmetric"), "coolwarm")
    neutral = image[:, 0, 1]
    assert (neutral.int() - torch.tensor([221, 220, 220])).abs().max() <= 1  # coolwarm's grey
    assert image[2, 0, 0] > image[0, 0, 0] and image[0, 0, 2] > image[2, 0, 2]  # blue < 0 < red


def test_rendering_upscale_nearest_integer():
    img = torch.tensor([[[1, 2], [3, 4]]], dtype=torch.uint8)
    assert r.upscale(img, 2)[0].tolist() == [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]]
    assert r.upscale_to(torch.zeros(3, 28, 28), 112).shape == (3, 112, 112)
    assert r.upscale_to(torch.zeros(3, 28, 20), 112).shape == (3, 28 * 6, 20 * 6)
    assert r.upscale_to(torch.zeros(1, 200, 200), 112).shape == (1, 200, 200)
    assert r.upscale(img, (1, 2))[0].tolist() == [[1, 1, 2, 2], [3, 3, 4, 4]]


def test_rendering_upscale_cells_scales_each_side_on_its_own():
    strip = torch.arange(32.0).reshape(1, 32, 1)
    big = r.upscale_cells_to(strip, 64)
    assert big.shape == (1, 64, 64)  # not 2048 x 64, as one factor for both sides would give
    assert big[0, ::2, 0].tolist() == strip[0, :, 0].tolist() and big[0, 1, 63] == 0
    assert r.upscale_cells_to(torch.zeros(3, 300, 200), 64).shape == (3, 600, 400)  # 2 px cells


def test_rendering_denormalize_and_overlay_blend():
    x = torch.tensor([[[(0.0 - 0.1307) / 0.3081, (1.0 - 0.1307) / 0.3081]]])
    image = to_image01(x, Norm((0.1307,), (0.3081,)))
    assert image.tolist()[0][0] == pytest.approx([0.0, 1.0], abs=1e-6)
    blended = r.overlay(image, torch.tensor([[1.0, 0.0]]), cmap="gray", alpha=0.25)
    # pixel 0: 0.75 * 0 + 0.25 * 1; pixel 1: 0.75 * 1 + 0.25 * 0
    assert blended[:, 0, 0].tolist() == [64] * 3 and blended[:, 0, 1].tolist() == [191] * 3


def test_rendering_grid_uses_make_grid_padding():
    tiles = torch.stack([torch.full((3, 4, 4), v, dtype=torch.uint8) for v in (10, 20, 30)])
    out = r.grid(tiles, nrow=2, padding=1, pad_value=0)
    assert out.dtype == torch.uint8 and out.shape == (3, 1 + 2 * 5, 1 + 2 * 5)
    assert out[0, 1, 1] == 10 and out[0, 1, 6] == 20 and out[0, 6, 1] == 30 and out[0, 0, 0] == 0
    mixed = r.grid([torch.zeros(1, 3, 3, dtype=torch.uint8), tiles[0]], nrow=2)
    assert mixed.shape == (3, 6, 11)


def test_rendering_stacks_border_dim_and_bars():
    a, b = (
        torch.full((3, 2, 3), 50, dtype=torch.uint8),
        torch.full((3, 4, 1), 90, dtype=torch.uint8),
    )
    assert r.hstack([a, b], gap=2).shape == (3, 4, 6) and r.vstack([a, b], gap=1).shape == (3, 7, 3)
    framed = r.border(torch.zeros(3, 5, 5, dtype=torch.uint8), (255, 0, 0))
    assert framed[:, 0, 0].tolist() == [255, 0, 0] and framed[:, 2, 2].tolist() == [0, 0, 0]
    assert r.dim(torch.full((3, 1, 1), 200, dtype=torch.uint8), 0.5).flatten().tolist() == [100] * 3
    bars = labels.bar_chart([1.0, 0.0], ["a", "b"], height=20, bar_width=6)
    green = (bars[1] == 175) & (bars[0] == 76)
    half = bars.shape[-1] // 2
    assert green[:, :half].sum() == 20 * 6 and not green[:, half:].any()


@pytest.mark.parametrize(
    ("count", "nrow", "padding"), [(2, 8, 1), (7, 3, 2), (13, 5, 0), (64, 8, 1)]
)
def test_rendering_grid_equals_make_grid_pixel_for_pixel(count, nrow, padding):
    from torchvision.utils import make_grid

    gen = torch.Generator().manual_seed(count)
    tiles = torch.randint(0, 256, (count, 3, 5, 7), dtype=torch.uint8, generator=gen)
    expected = make_grid(tiles, nrow=nrow, padding=padding, pad_value=40)
    assert torch.equal(r.grid(tiles, nrow=nrow, padding=padding, pad_value=40), expected)


def test_rendering_upscale_to_stops_where_the_long_side_passes_its_cap():
    # setups hunt 26: 16 x 512 text lines grown to 56 rows drew 1,792 px a tile, and the
    # activation-maximisation and adversarial images of them reached 14,000 px
    assert r.upscale_to(torch.zeros(3, 16, 512), 56).shape == (3, 64, 2048)
    assert r.upscale_to(torch.zeros(3, 16, 512), 56, max_side=224).shape == (3, 16, 512)
    assert r.upscale_to(torch.zeros(3, 28, 28), 56, max_side=224).shape == (3, 56, 56)
    from lightning_cnnviz.adversarial.fgsm import example_rows

    wide, maps = torch.rand(2, 1, 16, 512), torch.rand(2, 4, 128)
    cams = (torch.rand(2, 16, 512), torch.rand(2, 16, 512))
    rows = example_rows(wide, wide, 0.1, cams, (maps, maps), [0, 1], ([0, 1], [1, 1]))
    assert rows.shape[-1] <= 7 * (512 + 2)  # seven tiles a row, none grown past its cap
