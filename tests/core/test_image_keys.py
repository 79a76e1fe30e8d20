"""Image keys: equal images share one, different images never do, whatever the batch."""

import torch

from lightning_cnnviz.core.image_keys import image_keys
from lightning_cnnviz.overfitting.repeated_items import repeated_items


def _binarised(n, lit, seed):
    """``n`` different binary 8x8 images, each with exactly ``lit`` pixels on."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 1, 64)
    for i in range(n):
        x[i, 0, torch.randperm(64, generator=g)[:lit]] = 1.0
    return x.view(n, 1, 8, 8)


def test_image_keys_tell_binary_images_of_equal_brightness_apart():
    # hunt 34: digits binarised at 0.5 keyed by sum and sum of squares (their lit pixels)
    # made 256 different images a batch "the same few images at every step"
    x = _binarised(48, lit=10, seed=0)
    keys = [image_keys(x[i : i + 16]) for i in (0, 16, 32)]
    assert len({k for batch in keys for k in batch}) == 48
    assert repeated_items(keys, batch_size=16, set_size=2000) == {}
    again = [image_keys(x[:16]), image_keys(x[:16].flip(0)), image_keys(x[:16].roll(3, 0))]
    assert repeated_items(again, batch_size=16, set_size=2000)["distinct"] == 16.0


def test_image_keys_equal_images_equal_keys_in_any_batch_and_no_random_stream_moved():
    x = torch.rand(64, 3, 16, 16)
    state = torch.random.get_rng_state()
    alone, among = image_keys(x[5:6]), image_keys(x)
    assert alone[0] == among[5] and torch.equal(torch.random.get_rng_state(), state)
    assert image_keys(x[:1].half())[0] != image_keys(x[:1])[0]  # its dtype too
