"""Gradients that pass through a hook: which modules', and the words naming them.

Nothing here knows about Lightning. A hook on a parameter or a module returning a
changed gradient (a factor, a sign flip, zeros) steers every update by it: the optimiser
steps on what the hook returns. ``Settings.hooked`` lists the modules (``GLOBAL_HOOK``
for a global backward hook); the divergence and not-learning findings name them.

Example::

    >>> from torch import nn
    >>> layer = nn.Linear(2, 2)
    >>> _ = layer.weight.register_hook(lambda g: -g)
    >>> gradient_hooked(layer)
    True
"""

from __future__ import annotations

from torch import nn
from torch.nn.modules import module as torch_module

from lightning_cnnviz.core.voice import listed

__all__ = ["GLOBAL_HOOK", "global_backward_hooked", "gradient_hooked", "hooked_words"]

GLOBAL_HOOK = "*"  # ``Settings.hooked``'s name for a global backward hook (every module)


def global_backward_hooked() -> bool:
    """Whether a global module backward hook is set (it sees every module's gradients).

    ``register_module_full_backward_pre_hook`` / ``register_module_full_backward_hook``
    (held out, hunt 35: one multiplying every gradient by 1000, unnamed).
    """
    return bool(
        getattr(torch_module, "_global_backward_pre_hooks", None)
        or getattr(torch_module, "_global_backward_hooks", None)
    )


def gradient_hooked(module: nn.Module) -> bool:
    """Whether ``module``'s own gradients pass through a hook that may change them.

    ``register_hook`` or ``register_post_accumulate_grad_hook`` on one of its parameters,
    or a backward hook on the module (``register_full_backward_pre_hook``,
    ``register_full_backward_hook``: held out, hunt 34, a pre-hook multiplying the gradient
    reaching a conv by 1000 was told "lower the learning rate", unnamed).

    Example::

        >>> layer = nn.Linear(2, 2)
        >>> gradient_hooked(layer), (layer.weight.register_hook(lambda g: g * 0), 0)[1]
        (False, 0)
        >>> gradient_hooked(layer)
        True
        >>> conv = nn.Conv2d(1, 1, 3)
        >>> _ = conv.register_full_backward_pre_hook(lambda m, g: (g[0] * 1000,))
        >>> gradient_hooked(conv)
        True
    """
    if getattr(module, "_backward_pre_hooks", None) or getattr(module, "_backward_hooks", None):
        return True
    return any(
        getattr(p, "_backward_hooks", None) or getattr(p, "_post_accumulate_grad_hooks", None)
        for p in module.parameters(recurse=False)
    )


def hooked_words(hooked: tuple[str, ...]) -> str:
    """Which gradients pass through a hook (``Settings.hooked``), in words.

    Example::

        >>> hooked_words(("fc1",))[:53]
        'the gradients of `fc1` pass through a hook (`register'
    """
    named = [h for h in hooked if h != GLOBAL_HOOK]
    if named:
        return (
            f"the gradients of {listed(named)} pass through a hook (`register_hook` on a "
            "parameter, or a backward hook on the module)"
        )
    return (
        "every module's gradients pass through a global backward hook "
        "(`register_module_full_backward_pre_hook` or `register_module_full_backward_hook`)"
    )
