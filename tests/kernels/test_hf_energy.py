"""``hf_energy`` (a quadratic form of the taps) against the zero-padded FFT it replaces."""

import math

import pytest
import torch

from lightning_cnnviz.kernels import figures

_FFT_BUDGET = 1 << 22


def _hf_energy_fft(weight: torch.Tensor, cutoff: float = figures.HF_CUTOFF) -> torch.Tensor | None:
    """The reference: every filter zero-padded to ``FFT_SIZE`` taps per axis and FFT'd."""
    dims = tuple(range(2, weight.dim()))
    if not dims or all(weight.shape[d] == 1 for d in dims):
        return None
    w = weight.detach().float()
    sizes = [max(figures.FFT_SIZE, weight.shape[d]) for d in dims]
    grids = torch.meshgrid(*[torch.fft.fftfreq(n, device=w.device) for n in sizes], indexing="ij")
    high = sum(g.square() for g in grids) > cutoff**2 + 1e-12
    chunk = max(1, _FFT_BUDGET // max(1, w.shape[1] * math.prod(sizes)))
    shares, alive = [], []
    for part in w.split(chunk):
        power = torch.fft.fftn(part, s=sizes, dim=dims).abs().square().sum(dim=1)
        total = power.flatten(1).sum(1)
        shares.append((power * high).flatten(1).sum(1) / total.clamp_min(1e-30))
        alive.append(total > 0)
    share, live = torch.cat(shares), torch.cat(alive)
    return (share * live).sum() / live.sum().clamp_min(1)


def same_as_fft(weight: torch.Tensor, cutoff: float = figures.HF_CUTOFF) -> float:
    new, old = figures.hf_energy(weight, cutoff), _hf_energy_fft(weight, cutoff)
    assert new.shape == () and new.dtype == torch.float32 and new.device == weight.device
    assert float(new) == pytest.approx(float(old), rel=1e-5, abs=1e-7)
    return float(new)


SHAPES = [
    (6, 4, 3), (6, 4, 5), (6, 4, 7),  # Conv1d
    (6, 4, 3, 3), (6, 4, 5, 5), (6, 4, 7, 7), (6, 4, 1, 3), (6, 4, 3, 1),  # Conv2d
    (6, 4, 3, 3, 3), (4, 2, 2, 3, 3),  # Conv3d
    (8, 1, 3, 3), (8, 1, 5),  # depthwise
    (3, 2, 20), (3, 2, 17, 3),  # longer than FFT_SIZE: the grid grows to the kernel
]  # fmt: skip


@pytest.mark.parametrize("shape", SHAPES)
def test_kernels_hf_energy_matches_fft_on_random_weights(shape):
    g = torch.Generator().manual_seed(sum(shape))
    same_as_fft(torch.randn(*shape, generator=g))
    same_as_fft(torch.randn(*shape, generator=g).abs())  # a smooth, low-frequency part
    same_as_fft(torch.randn(*shape, generator=g), cutoff=0.13)
    same_as_fft(torch.randn(*shape, generator=g), cutoff=0.37)


def test_kernels_hf_energy_bins_on_the_cutoff_radius_are_low():
    # 20 taps: bins m / 20; at cutoff 0.4 the bins m = +-8 lie on the radius and count as
    # low, so a delta's share is the 3 bins m = 9, -9, -10 of 20 (a float32 grid put +-8 above).
    delta = torch.zeros(1, 1, 20)
    delta[..., 3] = 1.0
    assert float(figures.hf_energy(delta, cutoff=0.4)) == pytest.approx(3 / 20, rel=1e-6)
    assert float(figures.hf_energy(delta[..., :5])) == pytest.approx(
        7 / 16, rel=1e-6
    )  # m = 5..7, -8..-5


def test_kernels_hf_energy_matches_fft_on_special_filters():
    assert figures.hf_energy(torch.zeros(3, 2, 3, 3)) == 0.0  # no live filter: 0, not NaN
    assert same_as_fft(torch.zeros(3, 2, 3, 3)) == 0.0
    delta = torch.zeros(2, 3, 3, 3)
    delta[:, 1, 1, 1] = 1.0
    assert same_as_fft(delta) == pytest.approx(207 / 256)
    checker = (torch.arange(3)[:, None] + torch.arange(3)).remainder(2).float() * 2 - 1
    assert same_as_fft(checker.reshape(1, 1, 3, 3)) > 0.9
    mixed = torch.randn(5, 4, 3, 3, generator=torch.Generator().manual_seed(0))
    mixed[1:3] = 0  # zero filters are left out of the mean
    same_as_fft(mixed)
    assert same_as_fft(torch.ones(4, 2, 5, 5)) < 0.3
    assert same_as_fft(torch.ones(2, 1, 3, 3, 3)) < 0.4
    plain = torch.randn(4, 2, 3, 3, generator=torch.Generator().manual_seed(1))
    # subnormal-size energies still give the share: that of the same filters at unit scale
    # (the FFT's squares underflow there)
    assert float(figures.hf_energy(plain * 1e-20)) == pytest.approx(same_as_fft(plain), rel=1e-5)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_kernels_hf_energy_matches_fft_in_other_dtypes(dtype):
    w = torch.randn(16, 8, 3, 3, generator=torch.Generator().manual_seed(2)).to(dtype)
    same_as_fft(w)
    same_as_fft(w[:, :1].contiguous())
    same_as_fft(w.to(memory_format=torch.channels_last))  # a strided weight


def test_kernels_hf_energy_form_is_cached_per_kernel_and_cutoff():
    a = figures.high_frequency_form((3, 3), 0.25, torch.device("cpu"))
    assert a is figures.high_frequency_form((3, 3), 0.25, torch.device("cpu"))
    assert a is not figures.high_frequency_form((3, 3), 0.3, torch.device("cpu"))
    form, bins = a
    assert form.shape == (9, 9) and form.dtype == torch.float32 and bins == 256
    # Q holds the mask's bin count on its diagonal: 207 of 256 bins are high
    assert torch.allclose(torch.diagonal(form), torch.full((9,), 207.0))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_kernels_hf_energy_stays_on_the_device():
    w = torch.randn(64, 32, 3, 3, device="cuda", generator=torch.Generator("cuda").manual_seed(0))
    same_as_fft(w)
    same_as_fft(w.half())


def test_hf_energy_and_relative_change_of_weights_near_1e20_stay_finite():
    # setups hunt 50: float32 squares of weights near 1e20 overflow: hf_energy logged NaN,
    # relative_change inf then NaN, on a diverging run
    from lightning_cnnviz.kernels.figures import hf_energy, relative_change

    torch.manual_seed(0)
    w, moved = torch.randn(8, 3, 3, 3), torch.randn(8, 3, 3, 3)
    assert torch.isclose(hf_energy(w * 1e20), hf_energy(w), rtol=1e-5)
    big = relative_change((w + 0.1 * moved) * 1e20, w * 1e20)
    assert torch.isfinite(big) and torch.isclose(big, relative_change(w + 0.1 * moved, w))
