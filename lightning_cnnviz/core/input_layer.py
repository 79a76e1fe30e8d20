"""The layer a network takes its images through first, for a tap on what the steps hand it.

Nothing here knows about Lightning. ``first_layer`` finds it in a plain network,
``compiled_entry`` in a compiled one (outside the graph, where a hook still sees the
input); ``overfitting.step_inputs`` taps it to compare the images the training and the
validation steps hand the model.
"""

from __future__ import annotations

from torch import nn
from torch.nn.modules.lazy import LazyModuleMixin

from lightning_cnnviz.core.layer_calls import in_weight_average
from lightning_cnnviz.core.layer_types import TORCH_CONV_TYPES
from lightning_cnnviz.core.selection import outside_compiled

__all__ = ["compiled_entry", "first_layer"]

_NORM = nn.modules.batchnorm._BatchNorm


def first_layer(model: nn.Module, channels: int) -> tuple[nn.Module | None, str]:
    """The layer the images reach first: the first convolution, or a norm layer before it.

    A BatchNorm before the first convolution normalises by the batch in training and by
    its running statistics in eval, which would read as the steps' own difference (held
    out: an input BatchNorm told "`training_step` scales by 3.19x"); its input is the
    steps'. ``None`` where it does not take ``channels`` channels, where a dropout or
    an augmentation module comes first (it changes the images in training only, by
    design), or another layer with weights (a `Linear` stem: what it makes of the images
    changes as it learns, read as the steps' doing, setups hunt 35). A weight average's copy
    kept on the model (``core.layer_calls.in_weight_average``) is passed over wherever it is
    registered.

    Example::

        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3))
        >>> first_layer(net, 3)[0] is net[0]
        True
        >>> first_layer(nn.Sequential(nn.Dropout(0.2), *net), 3)[1]
        'its first layer is a training-only `Dropout`'
        >>> normed = nn.Sequential(nn.BatchNorm2d(3), *net)
        >>> first_layer(normed, 3)[0] is normed[0]
        True
        >>> first_layer(nn.Sequential(nn.Flatten(), nn.Linear(12, 12), nn.Unflatten(1, (3, 2, 2)),
        ...                           *net), 3)[1]
        'a `Linear` with weights comes before its first convolution'
        >>> from torch.optim.swa_utils import AveragedModel
        >>> held = nn.Module()
        >>> held.ema, held.net = AveragedModel(net), net  # the copy registered first
        >>> first_layer(held, 3)[0] is net[0]
        True
    """
    for path, module in model.named_modules():
        if path and in_weight_average(model, path):
            continue  # a weight average's copy, registered before the net: no batch reaches it
        name = type(module).__name__
        if isinstance(module, nn.modules.dropout._DropoutNd) or "augment" in (
            type(module).__module__.lower()
        ):
            return None, f"its first layer is a training-only `{name}`"
        if isinstance(module, _NORM) and module.num_features == channels:
            return module, ""
        if isinstance(module, TORCH_CONV_TYPES):
            # its channels come with this batch (`module.weight` is not read: under a
            # parametrization, spectral norm's, reading it runs a power iteration)
            lazy = isinstance(module, LazyModuleMixin) and module.has_uninitialized_params()
            if module.in_channels != channels and not lazy:
                taken = module.in_channels
                return None, f"its first convolution takes {taken} channels, not {channels}"
            return module, ""
        # a layer's own weights (a net's learnt scale holds children: used anywhere)
        weighted = next(module.parameters(recurse=False), None) is not None
        if weighted and next(module.children(), None) is None:
            return None, f"a `{name}` with weights comes before its first convolution"
    return None, "it has no convolution"


def compiled_entry(model: nn.Module) -> nn.Module | None:
    """The module a compiled ``model`` takes its images through, outside the compiled graph.

    The wrapper ``torch.compile(net)`` returns (the first), or ``model`` where Lightning
    compiled its ``forward``; its input is what the steps hand the network (a hook there
    changes nothing the graph traced). ``None`` for a network compiled in place.

    Example::

        >>> import torch
        >>> net = nn.Sequential(torch.compile(nn.Conv2d(3, 4, 3)), nn.ReLU())
        >>> compiled_entry(net) is net[0]
        True
    """
    if getattr(model, "_compiler_ctx", None) is not None:
        return model
    return next((m for m in outside_compiled(model).values() if hasattr(m, "_orig_mod")), None)
