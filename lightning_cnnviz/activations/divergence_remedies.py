"""What to try after a divergence, fitted to the run: the remedies each cause names.

Nothing here knows about Lightning. ``divergence_causes.divergence_cause`` picks the
remedies for the cause it names; ``fitted`` drops those the run already has or cannot
use; ``half_first`` puts float32 weights first under float16 weights; ``hot_start_text``
names the rate of a blow-up of the first steps, with its remedies.
"""

from __future__ import annotations

from lightning_cnnviz.core.voice import times

__all__ = [
    "DATA_REMEDIES",
    "HOT_REMEDIES",
    "INIT_REMEDIES",
    "RAISED_REMEDIES",
    "REMEDIES",
    "SUDDEN_REMEDIES",
    "fitted",
    "half_first",
    "hot_start_text",
]

REMEDIES = (
    "lower the learning rate (10x); clip gradients (Trainer(gradient_clip_val=1.0)); add a "
    "learning-rate warmup; check the inputs and labels for NaN/Inf and the loss for log(0) or "
    "division by zero; under 16-bit precision use bf16 or keep the loss scaler"
)
# A blow-up of the first steps under too high a rate, the network left dead at its chance loss.
HOT_REMEDIES = (
    "lower the learning rate of the first steps (10x), or warm it up from a small value over "
    "the first few hundred steps; clip gradients (Trainer(gradient_clip_val=1.0)); then "
    "train again from a fresh initialisation (units silenced this way rarely come back)"
)
# A rate a schedule raised (a warmup) is the cause: another warmup is no remedy.
RAISED_REMEDIES = (
    "lower the peak learning rate the schedule reaches (10x), or raise it more slowly; clip "
    "gradients (Trainer(gradient_clip_val=1.0)); under 16-bit precision use bf16 or keep the "
    "loss scaler"
)
# The first loss far above chance: the loss's scale at step 0 (the init, or a summed loss).
INIT_REMEDIES = (
    "a standard initialisation (PyTorch's default, or He/Kaiming with gain sqrt(2) for ReLU, "
    "Xavier for Sigmoid/Tanh) instead of a scaled-up one, or a smaller scale on the last "
    "layer's weights; a loss averaged over the batch (`reduction='mean'`); normalisation "
    "layers between layers; then, if it still diverges, a lower learning rate (10x) or "
    "gradient clipping (Trainer(gradient_clip_val=1.0))"
)
# A NaN/Inf from the data or the loss itself: the batch and the operation to check.
DATA_REMEDIES = (
    "check the training items for NaN/Inf or wild values (`torch.isfinite(x).all()`, "
    "`x.abs().max()` on the batch of that step; a corrupt file, a division by a zero std in "
    "a transform); guard the loss against "
    "log(0) and division by zero (clamp probabilities, add an epsilon); "
    "`torch.autograd.set_detect_anomaly(True)` names the operation; under 16-bit precision use "
    "bf16 or keep the loss scaler"
)
_CLIP = "clip gradients (Trainer(gradient_clip_val=1.0))"
_CLIPPING = "gradient clipping (Trainer(gradient_clip_val=1.0))"
_HALF = "; under 16-bit precision use bf16 or keep the loss scaler"
_WARMUP = "add a learning-rate warmup; "


def fitted(text: str, clip: float | None, half: bool, warmup: bool) -> str:
    """``text`` with its remedies fitted to the run: none it already has or cannot use.

    Held out (hunt 22): "clip gradients (gradient_clip_val=1.0)" on a run clipping at 0.5,
    "add a learning-rate warmup" on a OneCycle run, "under 16-bit precision use bf16" on
    a float32 one.

    Example::

        >>> print(fitted(REMEDIES, clip=0.5, half=False, warmup=True))
        ... # doctest: +NORMALIZE_WHITESPACE
        lower the learning rate (10x); clip gradients harder, or rather lower the rate: the
        run clips at 0.5 and still diverged; check the inputs and labels for NaN/Inf and the
        loss for log(0) or division by zero
    """
    if clip is not None:
        harder = f"clip gradients harder, or rather lower the rate: the run clips at {clip:g} "
        text = text.replace(_CLIP, harder + "and still diverged")
        text = text.replace(_CLIPPING, f"gradient clipping below the run's {clip:g}")
    if not half:
        text = text.replace(_HALF, "")
    if warmup:
        text = text.replace(_WARMUP, "")
    return text


# One step from a learnt, steady loss to NaN/Inf: one batch or one operation, not a rate.
SUDDEN_REMEDIES = f"{DATA_REMEDIES}; only if the data is clean, lower the learning rate"
HALF_TINY = 6e-8  # float16's smallest number: an epsilon below it rounds to 0


def half_first(message: str, eps: float | None = None) -> str:
    """A divergence's ``message`` with float32 weights as the first remedy (float16 weights).

    Held out: ``precision="16-true"`` with Adam went NaN at step 2 (its ``eps=1e-8``
    rounds to 0 in float16), told with "lower the learning rate" first.

    Example::

        >>> print(half_first("NaN at step 2. Try: lower the learning rate.", 1e-8)[15:75])
        Try: float32 weights first (`precision="16-mixed"` or `"bf16
    """
    adam = (
        f"; the optimiser's `eps={eps:g}` rounds to 0 there, so its steps divide by zero"
        if eps is not None and 0 < eps < HALF_TINY
        else ""
    )
    return message.replace(
        "Try: ",
        'Try: float32 weights first (`precision="16-mixed"` or `"bf16-mixed"` instead of '
        '`"16-true"`): the weights are float16, whose range (6e-8 to 65504) updates and '
        f"gradients leave easily{adam}; then ",
        1,
    )


def hot_start_text(step: int, then: float, now: float | None, dead: bool = True) -> str:
    """The rate of the steps up to a blow-up at ``step``, and now; ``dead``: nothing learnt since.

    The cause in words; what to try is ``HOT_REMEDIES``.

    The cause of a network such a blow-up left at its chance loss (``early_spike``), and
    of the units it silenced (held-out hunt 123: SGD's first two steps at 150x, 4.5 against
    0.03, told "learning goes on"; Adam 1e-2 on 100 classes told as a `.detach()`).

    Example::

        >>> hot_start_text(1, 4.5, 0.03)[:68]
        'The learning rate was 4.5 up to step 1, 150x the 0.03 in force now: '
        >>> hot_start_text(1, 0.01, 0.01)[:53]
        'The learning rate was 0.01 up to step 1 (as now): the'
        >>> hot_start_text(2, 9.0, 0.00525, dead=False)[38:100]
        '1714x the 0.00525 in force now: updates too large for this mod'
    """
    rate = f"{then:.3g} up to step {step}"
    if now is not None and 0 < now * 1.5 < then:
        rate += f", {times(then / now)} the {now:.3g} in force now"
    elif now is not None and now == then:
        rate += " (as now)"
    if not dead:  # the schedule lowered it since; what it did is not undone yet
        return (
            f"The learning rate was {rate}: updates too large for this model and data threw "
            "the weights far off."
        )
    return (
        f"The learning rate was {rate}: the first updates were too large for this model and "
        "data, threw the weights far off before anything was learnt, and silenced the units "
        "they pushed below zero, which pass no gradient back; the network has learnt nothing "
        "since."
    )
