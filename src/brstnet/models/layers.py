"""The torch pieces the backbone registry names: layers in timm arguments, and the
Virchow2 embedding."""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
from timm.layers import SwiGLUPacked
from torch import nn

#: Layers a backbone's timm arguments name (``BackboneSpec.kwargs`` values).
LAYERS: dict[str, Any] = {
    "swiglu_packed": SwiGLUPacked,
    "silu": nn.SiLU,
    "layernorm_eps1e-12": partial(nn.LayerNorm, eps=1e-12),
}

_LAYER_ARGUMENTS = ("mlp_layer", "act_layer", "norm_layer")


def timm_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """A spec's timm arguments with the named layers resolved (:data:`LAYERS`)."""
    return {k: LAYERS[v] if k in _LAYER_ARGUMENTS else v for k, v in kwargs.items()}


class ClassAndMeanTokens(nn.Module):
    """Virchow / Virchow2's embedding: the class token and the mean of the patch tokens
    (register tokens left out), concatenated."""

    def __init__(self, vit: nn.Module) -> None:
        super().__init__()
        self.vit = vit
        self.num_features = 2 * int(vit.num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.vit.forward_features(x)
        skip = int(getattr(self.vit, "num_prefix_tokens", 1))
        return torch.cat([tokens[:, 0], tokens[:, skip:].mean(dim=1)], dim=-1)
