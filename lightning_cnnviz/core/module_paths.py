"""A model's module at a dotted path, through the modules it registered.

Nothing here knows about Lightning. ``nn.Module.get_submodule`` goes by attribute, and a
class attribute of the same name hides a registered module: ``emav3 = None`` on a
``LightningModule`` class beside a timm ``ModelEmaV3`` registered under that name (hunt 76:
its copy told frozen), ``conv1 = None`` beside the conv (setups hunt 55: three monitors
said the layer was replaced by a new module at every event). ``named_modules`` names
layers through ``_modules``; so are they found again here.

Example::

    >>> import torch
    >>> from torch import nn
    >>> class Net(nn.Module):
    ...     conv = None  # a class attribute named like the module registered below
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.conv = nn.Conv2d(1, 2, 3)
    >>> net = Net()
    >>> type(registered(net, "conv")).__name__, registered(net, "gone"), net.conv
    ('Conv2d', None, None)
    >>> holder = nn.Module()
    >>> holder.net = torch.compile(Net())  # its layers named without `_orig_mod`
    >>> registered(holder, "net.conv") is holder.net._orig_mod._modules["conv"]
    True
"""

from __future__ import annotations

from torch import nn

__all__ = ["registered"]


def registered(model: nn.Module, path: str) -> nn.Module | None:
    """``model``'s module at ``path`` (``""``: the model), ``None`` where there is none."""
    module: nn.Module | None = model
    for part in path.split(".") if path else ():
        # a `torch.compile`d module: its layers are named without `_orig_mod`
        while module is not None and part not in module._modules:
            if "_orig_mod" not in module._modules:
                break
            module = module._modules["_orig_mod"]
        # TorchScript keeps its modules in a mapping with `in` and `[]` but no `get`
        module = module._modules[part] if module is not None and part in module._modules else None
    return module
