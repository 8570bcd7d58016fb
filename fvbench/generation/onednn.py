"""Run 3D convolutions on the CPU through oneDNN at any batch size.

PyTorch picks a convolution backend by heuristic; on the CPU a batch-1 float32 Conv3d with a 3x3x3 kernel and few
channels (the CogVideoX VAE at CPU scale, every decode and encode fvbench runs) falls to ``slow_conv3d``, measured
5-10x slower here than oneDNN (``mkldnn_convolution``) on the same input, which PyTorch already uses from batch 2 on.
The results agree to float32 rounding (max abs difference ~3e-6 on unit-scale inputs) and are deterministic.
Inference only: with gradients enabled, or off the CPU, or in other dtypes, the layer's own path runs.
``torch.utils.flop_counter.FlopCounterMode`` counts the routed call like any convolution (formula registered here).
"""

from __future__ import annotations

import types

import torch
from torch import nn
from torch.utils.flop_counter import conv_flop_count, flop_registry, register_flop_formula

if torch.ops.aten.mkldnn_convolution not in flop_registry:
    @register_flop_formula(torch.ops.aten.mkldnn_convolution)
    def _mkldnn_convolution_flops(x_shape, w_shape, *args, out_shape=None, **kwargs) -> int:
        """FLOPs of ``mkldnn_convolution`` (never transposed): the same count as ``aten.convolution``'s."""
        return conv_flop_count(x_shape, w_shape, out_shape, transposed=False)


def _conv_forward(self: nn.Conv3d, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    if (input.device.type == "cpu" and input.dtype == torch.float32 and weight.dtype == torch.float32
            and not torch.is_grad_enabled() and torch.backends.mkldnn.is_available()):
        return torch.ops.aten.mkldnn_convolution(input.contiguous(), weight.contiguous(), bias, self.padding,
                                                 self.stride, self.dilation, self.groups)
    return nn.Conv3d._conv_forward(self, input, weight, bias)


def use_onednn_conv3d(module: nn.Module) -> int:
    """Route every zero-padded ``nn.Conv3d`` in ``module`` through oneDNN on the CPU; returns how many were routed."""
    n = 0
    for m in module.modules():
        if isinstance(m, nn.Conv3d) and m.padding_mode == "zeros" and not isinstance(m.padding, str):
            m._conv_forward = types.MethodType(_conv_forward, m)
            n += 1
    return n
