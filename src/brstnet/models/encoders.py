"""Pathology foundation encoders as backbones, loaded through timm from local files only.

Each entry fixes the encoder's architecture (timm model and arguments, from its model
card), its input normalisation and the micrometres per pixel it was trained at. The
weights come from, in order:

1. a local file (``.safetensors`` / ``.bin`` / ``.pth``) or folder given in
   ``model_training.encoder_weights`` (a folder in timm / Hugging Face layout, with its
   ``config.json``, is read with timm's ``local-dir:`` source);
2. the local Hugging Face cache (``HF_HUB_CACHE``, e.g. after ``huggingface-cli download
   MahmoodLab/UNI`` on a machine with access), looked up with ``local_files_only``.

Nothing is downloaded at run time. Gated models (UNI, Virchow2, ...) need their licence
accepted on the Hub by whoever downloads them.

Not here: CONCH (an open_clip model), Phikon / Phikon-v2 (Hugging Face transformers
models) and CTransPath (a modified Swin with its own stem): none loads through timm alone.
"""

from __future__ import annotations

import logging
from pathlib import Path

import timm
import torch
from timm.layers import SwiGLUPacked
from torch import nn

logger = logging.getLogger(__name__)


class EncoderNotFoundError(FileNotFoundError):
    """An encoder's weights are neither configured locally nor in the local HF cache."""


def hub_snapshot(repo_id: str, *, cache_dir: str | Path | None = None) -> Path:
    """The folder of ``repo_id`` in the local Hugging Face cache (never downloads).

    Raises:
        EncoderNotFoundError: not in the cache, saying how to get it there.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, cache_dir=cache_dir, local_files_only=True))
    except LocalEntryNotFoundError:
        raise EncoderNotFoundError(
            f"the weights of {repo_id} are not in the local Hugging Face cache "
            f"({cache_dir or 'HF_HUB_CACHE'}); nothing is downloaded at run time: run "
            f"`huggingface-cli download {repo_id}` where the Hub is reachable (accepting its "
            "licence), or set model_training.encoder_weights.<encoder> to a local file or folder"
        ) from None


def pretrained_trunk(
    timm_name: str,
    kwargs: dict,
    *,
    hub: str | None,
    source: str | Path | None = None,
    cache_dir: str | Path | None = None,
) -> nn.Module:
    """The encoder with its pretrained weights, built by timm from local files.

    Args:
        timm_name: The architecture (e.g. ``vit_large_patch16_224``).
        kwargs: Its timm arguments (from the model card).
        hub: The Hugging Face repository of the weights (e.g. ``MahmoodLab/UNI``).
        source: A local weights file or folder (overrides the cache).
        cache_dir: The Hugging Face cache (default: ``HF_HUB_CACHE``).
    """
    args = {**kwargs, "num_classes": 0}
    if source is not None:
        path = Path(source)
        if path.is_dir():
            return timm.create_model(f"local-dir:{path}", pretrained=True, **args)
        if path.is_file():
            return timm.create_model(
                timm_name, pretrained=True, pretrained_cfg_overlay={"file": str(path)}, **args
            )
        raise EncoderNotFoundError(f"encoder weights {path} not found; give a local file or folder")
    if hub is None:
        raise EncoderNotFoundError(f"{timm_name} has no Hub repository; give its weights file")
    snapshot = hub_snapshot(hub, cache_dir=cache_dir)
    if (snapshot / "config.json").is_file():
        return timm.create_model(f"local-dir:{snapshot}", pretrained=True, **args)
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (snapshot / name).is_file():
            return timm.create_model(
                timm_name,
                pretrained=True,
                pretrained_cfg_overlay={"file": str(snapshot / name)},
                **args,
            )
    raise EncoderNotFoundError(f"{snapshot} holds no model.safetensors or pytorch_model.bin")


def load_encoder_weights(
    trunk: nn.Module,
    name: str,
    *,
    source: str | Path | None = None,
    cache_dir: str | Path | None = None,
) -> None:
    """Copy encoder ``name``'s pretrained weights into ``trunk`` (built by its spec).

    Raises:
        EncoderNotFoundError: weights neither configured nor cached.
        ValueError: the weights do not fit the registered architecture.
    """
    from .backbones import backbone_spec

    spec = backbone_spec(name)
    target = trunk.vit if isinstance(trunk, ClassAndMeanTokens) else trunk
    try:  # timm loads the file into the registered architecture, then we copy it
        pretrained = pretrained_trunk(
            spec.timm_name, spec.kwargs, hub=spec.hub, source=source, cache_dir=cache_dir
        )
        state = pretrained.state_dict()
        result = target.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shapes differ
        first = next((line.strip() for line in str(err).splitlines() if "mismatch" in line), err)
        raise ValueError(
            f"the weights of encoder {name} do not fit its architecture {spec.timm_name}: {first}"
        ) from None
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(
            f"the weights of encoder {name} do not fit its architecture {spec.timm_name}: "
            f"missing {result.missing_keys[:3]}, unexpected {result.unexpected_keys[:3]}"
        )
    logger.info("encoder %s: %d pretrained tensors loaded", name, len(state))


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


#: ViT-H/14 with SwiGLU MLPs and 8 register tokens (UNI2-h's model card).
UNI2_H_KWARGS = {
    "img_size": 224,
    "patch_size": 14,
    "depth": 24,
    "num_heads": 24,
    "init_values": 1e-5,
    "embed_dim": 1536,
    "mlp_ratio": 2.66667 * 2,
    "no_embed_class": True,
    "mlp_layer": SwiGLUPacked,
    "act_layer": nn.SiLU,
    "reg_tokens": 8,
    "dynamic_img_size": True,
}
