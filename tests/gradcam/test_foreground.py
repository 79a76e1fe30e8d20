"""The foreground (object) mask: measured from the background, robust to a small extreme patch."""

import pytest
import torch

from lightning_cnnviz.core.inputs import to_image01
from lightning_cnnviz.gradcam.objects import foreground, levels


def shape_images(n: int = 8, side: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Coloured bars (3x13 px) on uniform noise in [0, 0.3], normalised as (x - 0.3) / 0.3."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, side, side, generator=g) * 0.3
    obj = torch.zeros(n, side, side, dtype=torch.bool)
    for i in range(n):
        r, c = (int(v) for v in torch.randint(8, side - 14, (2,), generator=g))
        obj[i, r : r + 3, c : c + 13] = True
        x[i][:, obj[i]] = (torch.rand(3, generator=g) * 0.4 + 0.4)[:, None]  # over 4 noise stds
    return (x - 0.3) / 0.3, obj


def test_foreground_levels_read_the_background_on_the_border():
    bright = torch.full((1, 32, 32), 0.1)
    bright[0, 8:24, 8:24] = 0.9  # an object covering a quarter of the image
    bright[0, :4, :4] = 1.0  # a corner patch: 7 of the border's 124 pixels
    background, spread, top = levels(bright)
    assert float(background) == pytest.approx(0.1) and float(spread) == 0.0
    assert float(top) == 1.0  # the 99th percentile: the patch is 1.6% of the image


def test_foreground_plain_shape_on_black_keeps_the_brightness_threshold():
    image = torch.zeros(2, 1, 28, 28)
    image[:, 0, 6:22, 12:15] = 1.0  # a stroke: 48 pixels, 6.1% of the image
    image[1, 0, 6:22, 15:16] = 0.25  # its faint edge: over 0.2, part of it
    fg = foreground(image, 0.2)
    assert fg.sum((1, 2)).tolist() == [48, 64]
    assert torch.equal(fg, image.mean(1) > 0.2)  # on black: the plain threshold, as before


def test_foreground_of_rescaled_noisy_images_is_the_shape_not_the_noise():
    x, obj = shape_images()
    fg = foreground(to_image01(x, None), 0.2)  # each image rescaled to its own range
    share, true_share = fg.float().mean().item(), obj.float().mean().item()
    assert abs(share - true_share) < 0.005  # 3.8% each
    assert (fg & obj).sum() / obj.sum() > 0.98 and (fg & obj).sum() / fg.sum() > 0.95
    # a fixed level over the rescaled image took a quarter of the noise with it
    assert (to_image01(x, None).mean(1) > 0.2).float().mean() > 0.2


def test_foreground_with_a_small_bright_patch_covers_the_shape_not_the_patch():
    x, obj = shape_images()
    patch = torch.zeros_like(obj)
    patch[:, :4, :4] = True  # a 4x4 corner patch at level 3.0, brighter than any shape
    x[:, :, :4, :4] = 3.0
    fg = foreground(to_image01(x, None), 0.2)
    assert (fg & obj).sum() / obj.sum() > 0.98  # the shape, whole
    assert not (fg & patch).any()  # not the patch (16 px, at least a quarter of a 39-px bar)
    assert abs(fg.float().mean().item() - obj.float().mean().item()) < 0.005
    # the mask of the same images without the patch: it moves neither background nor level
    plain = foreground(to_image01(shape_images()[0], None), 0.2)
    assert torch.equal(fg, plain)


def test_foreground_with_a_small_dark_patch_covers_the_shape():
    x, obj = shape_images()
    x[:, :, :4, :4] = -4.0  # far darker than the background: it stretches each image's range
    fg = foreground(to_image01(x, None), 0.2)
    assert (fg & obj).sum() / obj.sum() > 0.98 and (fg & obj).sum() / fg.sum() > 0.95


def test_foreground_where_nothing_stands_out_is_all_object():
    noise = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    image = torch.full((2, 3, 16, 16), 0.7) + 0.05 * noise
    image[:, :, 4:10, 4:10] = 0.2  # a dark square on a bright noisy backdrop: not bright
    image[1] = 0.0  # blank
    fg = foreground(image.clamp(0, 1), 0.2)
    assert fg.flatten(1).float().mean(1).tolist() == [1.0, 1.0]  # so no CAM is "off" it


def test_foreground_of_a_saturated_colour_on_noise_is_the_whole_shape():
    # hunt 21: shapes coloured by class on a noisy background were masked at 2-5% of the
    # image for 8-11%: a red shape's channel mean sits in the noise, its red channel does not
    g = torch.Generator().manual_seed(0)
    image = torch.randn(4, 3, 24, 24, generator=g) * 0.1 + 0.2
    image[:, 0, 8:14, 8:14] += 0.6
    mask = foreground(image.clamp(0, 1), 0.2)
    assert mask.flatten(1).sum(1).tolist() == [36] * 4
    assert bool(mask[:, 8:14, 8:14].all())
