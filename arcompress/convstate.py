"""The float weights of a model's named convolutions: state for model files, and their exact
conversion.  Shared by PixelCNN++, PixelSNAIL and WaveNet, whose ``ops.convs`` hold one
convolution per entry of ``ops.specs(cfg)`` (layer ``"u0.c1"`` is stored as ``convs["u0_c1"]``).
"""

from __future__ import annotations

import torch

from . import fixedpoint as fp


class NamedConvs:
    """Mixin for float models (``self.cfg``, ``self.ops.convs``, ``self.ops.specs``)."""

    def named_convs(self):
        """(layer name, convolution module) in layer-table order."""
        for name in self.ops.specs(self.cfg):
            yield name, self.ops.convs[name.replace(".", "_")]

    def float_state(self) -> dict[str, torch.Tensor]:
        """Float weights keyed by layer name ("u0.c1.weight"), for model files."""
        out = {}
        for name, conv in self.named_convs():
            out[f"{name}.weight"] = conv.weight.detach().float().contiguous()
            out[f"{name}.bias"] = conv.bias.detach().float().contiguous()
        return out

    def load_float_state(self, state: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for name, conv in self.named_convs():
                conv.weight.copy_(state[f"{name}.weight"])
                conv.bias.copy_(state[f"{name}.bias"])


def exact_convs(model: NamedConvs) -> dict[str, torch.Tensor]:
    """Every convolution as exact tensors: int16 weights (|W| <= 2**15 - 1), int32 per-channel
    shifts and int64 biases (:func:`fixedpoint.quantize_weight`), each layer checked against the
    2**52 bound.  1-D (WaveNet) kernels are quantized as 1 x k."""
    out: dict[str, torch.Tensor] = {}
    for name, conv in model.named_convs():
        one_d = conv.weight.dim() == 3
        wi, sh, bi = fp.quantize_weight(conv.weight.unsqueeze(-2) if one_d else conv.weight, conv.bias)
        wi = wi.squeeze(-2) if one_d else wi
        fp.check_conv_bound(wi, bi, name)
        out[f"{name}.weight"] = wi.to(torch.int16)
        out[f"{name}.shift"] = sh.to(torch.int32)
        out[f"{name}.bias"] = bi
    return out
