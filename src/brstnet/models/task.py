"""The expression model (trunk + main head + optional auxiliary and depth heads) and its loss.

BrST-Net's auxiliary network: a second linear head on the same pooled features predicts
the remaining filtered genes; loss = MSE(main) + w * MSE(aux). "No auxiliary" is the
same code with no aux head (w = 0 or no aux genes), not a second path.

The depth head predicts the spot's log read depth (z-scored with training statistics):
with library-normalised targets the main head predicts composition, the depth head how
many reads the spot has, and the two give counts on the training scale
(:func:`brstnet.features.targets.convert_scale`). loss += d * MSE(depth). By default the
depth head reads the features without passing gradients back (``depth_detach``): it
learns the depth from what the trunk encodes, but does not steer the trunk towards read
depth, which on the inner validation split cost the gene-specific figures (README,
"Choosing settings").
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .backbones import IMAGENET_MEAN, IMAGENET_STD, create_backbone


class SpotContext(nn.Module):
    """Spatial context over a section's spot embeddings (TRIPLEX's idea, as attention).

    The spot's own embedding is the query of an attention over its grid neighbours'
    embeddings (:func:`brstnet.st.neighbours.spot_neighbours`); the section's mean
    embedding is the section-level summary. The output concatenates the three, so the
    heads read the spot, its neighbourhood and its section.

    Args:
        width: Embedding width of the trunk.
        dim: Width of the attention's queries and keys.
    """

    def __init__(self, width: int, dim: int = 128) -> None:
        super().__init__()
        self.dim = dim
        self.query = nn.Linear(width, dim)
        self.key = nn.Linear(width, dim)
        self.value = nn.Linear(width, width)
        self.section = nn.Linear(width, width)

    def forward(
        self,
        own: torch.Tensor,
        neighbours: torch.Tensor,
        mask: torch.Tensor,
        section: torch.Tensor,
    ) -> torch.Tensor:
        """Args:
        own: [B, D] the spots' embeddings.
        neighbours: [B, K, D] their neighbours' embeddings (anything where masked).
        mask: [B, K] True where a neighbour exists.
        section: [B, D] the mean embedding of each spot's section.

        Returns:
            [B, 3 D]: own, attended neighbourhood (0 without neighbours), section.
        """
        scores = (self.query(own)[:, None, :] * self.key(neighbours)).sum(-1) / self.dim**0.5
        scores = scores.float().masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=-1).nan_to_num(0.0)  # no neighbour: all zero
        attended = (weights.to(neighbours.dtype)[..., None] * self.value(neighbours)).sum(1)
        return torch.cat([own, attended, self.section(section)], dim=-1)


class ExpressionModel(nn.Module):
    """Backbone features -> main-panel expression (and auxiliary genes).

    Args:
        backbone: A name from :data:`brstnet.models.BACKBONES`.
        n_main: Main-panel genes.
        n_aux: Auxiliary genes; 0 builds no auxiliary head.
        img_size: Input side in pixels.
        mean: Per-channel input mean (RGB, 0-1 scale) the images are normalised with.
        std: Per-channel input standard deviation.
        depth_head: Build a one-output head for the spot's (z-scored) log read depth.
        depth_detach: The depth head reads the features detached (its loss trains the
            head only, never the trunk or the context).
        context: Read the spot's grid neighbours and section too (:class:`SpotContext`):
            the heads then take the context's output, and the model is fed embeddings
            (``context`` argument of :meth:`forward`).
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
        depth_head: bool = False,
        context: bool = False,
        depth_detach: bool = True,
    ) -> None:
        super().__init__()
        self.pixel_mean, self.pixel_std = tuple(mean), tuple(std)
        self.trunk, width = create_backbone(backbone, img_size=img_size)
        self.context = SpotContext(width) if context else None
        fused = 3 * width if context else width
        self.head = nn.Linear(fused, n_main)
        self.aux_head = nn.Linear(fused, n_aux) if n_aux > 0 else None
        self.depth_head = nn.Linear(fused, 1) if depth_head else None
        self.depth_detach = depth_detach

    def forward(
        self, images: torch.Tensor, context: dict[str, torch.Tensor] | None = None
    ) -> dict[str, torch.Tensor]:
        """Map [B, 3, H, W] normalised images to {"main": [B, n_main], "aux": [B, n_aux],
        "depth": [B]} (the heads the model has).

        Args:
            context: A context model's neighbour embeddings [B, K, D], their mask [B, K]
                and section means [B, D] (``neighbours``, ``mask``, ``section``).
        """
        return self.heads(self.trunk(images), context)

    def heads(
        self, features: torch.Tensor, context: dict[str, torch.Tensor] | None = None
    ) -> dict[str, torch.Tensor]:
        """The heads on [B, D] trunk embeddings (after the spatial context, if any)."""
        if self.context is not None:
            if context is None:
                raise ValueError(
                    "a context model needs its spots' neighbours: predict with the spots' "
                    "positions (brstnet.training.predict.predict with neighbours)"
                )
            features = self.context(
                features, context["neighbours"], context["mask"], context["section"]
            )
        out = {"main": self.head(features)}
        if self.aux_head is not None:
            out["aux"] = self.aux_head(features)
        if self.depth_head is not None:
            depth_in = features.detach() if self.depth_detach else features
            out["depth"] = self.depth_head(depth_in).squeeze(-1)
        return out


class ExpressionTask(nn.Module):
    """Model + loss: forward returns {"loss", "loss_main", "loss_aux", "output"}, and
    "depth" and "loss_depth" when the model has a depth head.

    Args:
        model: The expression model.
        aux_weight: w in MSE(main) + w * MSE(aux). Ignored (0) without an aux head.
        depth_weight: d in ... + d * MSE(depth). Ignored (0) without a depth head.
    """

    def __init__(
        self, model: ExpressionModel, *, aux_weight: float = 1.0, depth_weight: float = 0.0
    ) -> None:
        super().__init__()
        self.model = model
        self.aux_weight = float(aux_weight) if model.aux_head is not None else 0.0
        self.depth_weight = float(depth_weight) if model.depth_head is not None else 0.0

    def forward(
        self,
        images: torch.Tensor,
        targets: torch.Tensor | None = None,
        aux_targets: torch.Tensor | None = None,
        depth_targets: torch.Tensor | None = None,
        context: dict[str, torch.Tensor] | None = None,
        *,
        features: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Args:
        images: [B, 3, H, W] normalised (None when ``features`` are given).
        targets: [B, n_main] or None (prediction only).
        aux_targets: [B, n_aux] or None.
        depth_targets: [B] z-scored log read depth, or None.
        context: A context model's neighbour embeddings (see ExpressionModel.forward).
        features: [B, D] trunk embeddings instead of images (a context model's second
            pass at prediction).
        """
        if features is not None:
            output = self.model.heads(features, context)
        else:
            output = self.model(images, context)
        result: dict[str, torch.Tensor] = {"output": output["main"]}
        if "depth" in output:
            result["depth"] = output["depth"]
        if targets is None:
            return result
        loss_main = F.mse_loss(output["main"].float(), targets.float())
        loss_aux = torch.zeros((), device=loss_main.device)
        if self.aux_weight > 0 and aux_targets is not None:
            loss_aux = F.mse_loss(output["aux"].float(), aux_targets.float())
        loss = loss_main + self.aux_weight * loss_aux
        result.update(loss_main=loss_main, loss_aux=loss_aux)
        if self.depth_weight > 0 and depth_targets is not None:
            loss_depth = F.mse_loss(output["depth"].float(), depth_targets.float())
            loss = loss + self.depth_weight * loss_depth
            result["loss_depth"] = loss_depth
        result["loss"] = loss
        return result
