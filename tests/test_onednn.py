"""Conv3d through oneDNN at batch 1: same numbers as PyTorch's own path (to float32 rounding), actually routed."""

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

from fvbench.generation.onednn import use_onednn_conv3d


def _kernels(fn) -> set[str]:
    with profile(activities=[ProfilerActivity.CPU]) as p:
        fn()
    return {e.key for e in p.key_averages()}


def test_batch1_conv3d_runs_onednn_and_matches():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv3d(4, 8, 3, padding=(0, 1, 1)), nn.SiLU(), nn.Conv3d(8, 4, (3, 3, 3), stride=(1, 2, 2)))
    x = torch.randn(1, 4, 5, 12, 14)
    with torch.no_grad():
        expected = net(x)
        assert "aten::slow_conv3d" in _kernels(lambda: net(x))  # PyTorch's own choice here
        assert use_onednn_conv3d(net) == 2
        got = net(x)
        assert torch.equal(got, net(x))  # deterministic
        assert "aten::slow_conv3d" not in _kernels(lambda: net(x)) and "aten::mkldnn_convolution" in _kernels(lambda: net(x))
    assert got.shape == expected.shape and torch.allclose(got, expected, atol=1e-5)
    y = net(x.requires_grad_())  # training keeps PyTorch's path (and its gradients)
    y.sum().backward()
    assert x.grad is not None and torch.allclose(y.detach(), expected, atol=1e-6)


def test_flop_counter_counts_the_routed_convolution():
    from torch.utils.flop_counter import FlopCounterMode

    conv = nn.Conv3d(4, 8, 3)
    x = torch.randn(1, 4, 5, 12, 14)

    def count() -> int:
        with torch.no_grad(), FlopCounterMode(display=False) as c:
            conv(x)
        return c.get_total_flops()

    before = count()
    use_onednn_conv3d(conv)
    assert count() == before == 2 * 8 * 4 * 27 * 3 * 10 * 12  # 2 x out channels x in x kernel x output positions


def test_other_layers_untouched():
    m = nn.Sequential(nn.Conv2d(3, 3, 3), nn.Conv3d(3, 3, 3, padding="same"), nn.Conv3d(3, 3, 3, padding_mode="replicate"))
    assert use_onednn_conv3d(m) == 0
