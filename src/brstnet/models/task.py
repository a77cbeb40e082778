"""The expression model (trunk + main head + optional auxiliary head) and its loss.

BrST-Net's auxiliary network: a second linear head on the same pooled features predicts
the remaining filtered genes; loss = MSE(main) + w * MSE(aux). "No auxiliary" is the
same code with no aux head (w = 0 or no aux genes), not a second path.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .backbones import IMAGENET_MEAN, IMAGENET_STD, create_backbone


class ExpressionModel(nn.Module):
    """Backbone features -> main-panel expression (and auxiliary genes).

    Args:
        backbone: A name from :data:`brstnet.models.BACKBONES`.
        n_main: Main-panel genes.
        n_aux: Auxiliary genes; 0 builds no auxiliary head.
        img_size: Input side in pixels.
        mean: Per-channel input mean (RGB, 0-1 scale) the images are normalised with.
        std: Per-channel input standard deviation.
    """

    def __init__(
        self,
        backbone: str,
        *,
        n_main: int,
        n_aux: int = 0,
        img_size: int,
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
    ) -> None:
        super().__init__()
        self.pixel_mean, self.pixel_std = tuple(mean), tuple(std)
        self.trunk, width = create_backbone(backbone, img_size=img_size)
        self.head = nn.Linear(width, n_main)
        self.aux_head = nn.Linear(width, n_aux) if n_aux > 0 else None

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Map [B, 3, H, W] normalised images to {"main": [B, n_main], "aux": [B, n_aux]}."""
        features = self.trunk(images)
        out = {"main": self.head(features)}
        if self.aux_head is not None:
            out["aux"] = self.aux_head(features)
        return out


class ExpressionTask(nn.Module):
    """Model + loss: forward returns {"loss", "loss_main", "loss_aux", "output"}.

    Args:
        model: The expression model.
        aux_weight: w in MSE(main) + w * MSE(aux). Ignored (0) without an aux head.
    """

    def __init__(self, model: ExpressionModel, *, aux_weight: float = 1.0) -> None:
        super().__init__()
        self.model = model
        self.aux_weight = float(aux_weight) if model.aux_head is not None else 0.0

    def forward(
        self,
        images: torch.Tensor,
        targets: torch.Tensor | None = None,
        aux_targets: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Args:
        images: [B, 3, H, W] normalised.
        targets: [B, n_main] or None (prediction only).
        aux_targets: [B, n_aux] or None.
        """
        output = self.model(images)
        result: dict[str, torch.Tensor] = {"output": output["main"]}
        if targets is None:
            return result
        loss_main = F.mse_loss(output["main"].float(), targets.float())
        loss_aux = torch.zeros((), device=loss_main.device)
        if self.aux_weight > 0 and aux_targets is not None:
            loss_aux = F.mse_loss(output["aux"].float(), aux_targets.float())
        result.update(
            loss=loss_main + self.aux_weight * loss_aux, loss_main=loss_main, loss_aux=loss_aux
        )
        return result
