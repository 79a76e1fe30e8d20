"""Call sites and the depth order of the layers, read from one traced pass."""

import pytest
import torch
from torch import nn

from lightning_cnnviz.activations.sites import trace_sites


class _SideHead(nn.Module):
    """A CNN returning ``{"logits", "aux"}``, its auxiliary Linear on the raw input run last."""

    def __init__(self, then=lambda logits: logits) -> None:
        super().__init__()
        self.conv, self.act, self.fc = nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Linear(4 * 9, 3)
        self.aux, self.then = nn.Linear(25, 3), then

    def forward(self, x):
        logits = self.then(self.fc(self.act(self.conv(x)).flatten(1)))
        return {"aux": self.aux(x.flatten(1)), "logits": logits}


@pytest.mark.parametrize(
    "then", [lambda z: z, lambda z: z.log_softmax(1), lambda z: z.softmax(1), lambda z: z / 2]
)
def test_sites_depth_order_ends_at_the_layer_whose_output_the_model_returns(then):
    # setups hunts 64 and 65: the side head, called after the logits' Linear (or after a
    # log_softmax on them), was read as the last layer of the depth profile: "vanishing
    # gradients" against its gradient
    net, order = _SideHead(then), []
    trace_sites(net, {"act": net.act}, lambda: net(torch.randn(4, 1, 5, 5)), order)
    assert order == ["conv", "fc"]
    # a plain tensor output: every weighted layer up to the one that computes it
    plain, order = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(36, 3)), []
    trace_sites(plain, {}, lambda: plain(torch.randn(2, 1, 5, 5)), order)
    assert order == ["0", "2"]
