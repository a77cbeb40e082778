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

Phikon and Phikon-v2 are published as Hugging Face transformers models (``ViTModel``,
``Dinov2Model``); their weights are renamed into timm's ViT (:func:`transformers_vit_to_timm`),
so they run as timm models too, without transformers.

Not here: CONCH (an open_clip CoCa model) and CTransPath (a modified Swin with its own
convolutional stem): neither loads through timm alone.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import timm
import torch
from huggingface_hub import snapshot_download
from huggingface_hub.errors import LocalEntryNotFoundError
from safetensors.torch import load_file
from timm.layers import resample_abs_pos_embed
from torch import nn

from .layers import ClassAndMeanTokens, timm_kwargs
from .specs import backbone_spec

logger = logging.getLogger(__name__)


class EncoderNotFoundError(FileNotFoundError):
    """An encoder's weights are neither configured locally nor in the local HF cache."""


def hub_snapshot(repo_id: str, *, cache_dir: str | Path | None = None) -> Path:
    """The folder of ``repo_id`` in the local Hugging Face cache (never downloads).

    Raises:
        EncoderNotFoundError: not in the cache, saying how to get it there.
    """
    try:
        return Path(snapshot_download(repo_id, cache_dir=cache_dir, local_files_only=True))
    except LocalEntryNotFoundError:
        raise EncoderNotFoundError(
            f"the weights of {repo_id} are not in the local Hugging Face cache "
            f"({cache_dir or 'HF_HUB_CACHE'}); nothing is downloaded at run time: run "
            f"`huggingface-cli download {repo_id}` where the Hub is reachable (accepting its "
            "licence), or set model_training.encoder_weights.<encoder> to a local file or folder"
        ) from None


#: Hugging Face transformers ViT / DINOv2 names -> timm ViT names (first match wins).
_TRANSFORMERS_TO_TIMM = [
    (r"^embeddings\.cls_token$", "cls_token"),
    (r"^embeddings\.position_embeddings$", "pos_embed"),
    (r"^embeddings\.patch_embeddings\.projection\.", "patch_embed.proj."),
    (r"^encoder\.layer\.(\d+)\.(?:layernorm_before|norm1)\.", r"blocks.\1.norm1."),
    (r"^encoder\.layer\.(\d+)\.(?:layernorm_after|norm2)\.", r"blocks.\1.norm2."),
    (r"^encoder\.layer\.(\d+)\.attention\.output\.dense\.", r"blocks.\1.attn.proj."),
    (r"^encoder\.layer\.(\d+)\.(?:intermediate\.dense|mlp\.fc1)\.", r"blocks.\1.mlp.fc1."),
    (r"^encoder\.layer\.(\d+)\.(?:output\.dense|mlp\.fc2)\.", r"blocks.\1.mlp.fc2."),
    (r"^encoder\.layer\.(\d+)\.layer_scale1\.lambda1$", r"blocks.\1.ls1.gamma"),
    (r"^encoder\.layer\.(\d+)\.layer_scale2\.lambda1$", r"blocks.\1.ls2.gamma"),
    (r"^layernorm\.", "norm."),
]
_QKV = re.compile(
    r"^encoder\.layer\.(\d+)\.attention\.attention\.(query|key|value)\.(weight|bias)$"
)
#: Not part of the embedding: DINOv2's mask token, ViT's pooler (a tanh head).
_SKIPPED = re.compile(r"^(embeddings\.mask_token|pooler\.)")


def transformers_vit_to_timm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Weights of a transformers ``ViTModel`` / ``Dinov2Model`` under timm ViT names.

    Query, key and value projections are stacked into timm's ``qkv``; layer scales
    become ``ls1`` / ``ls2``; a model prefix (``vit.``, ``dinov2.``) is dropped.

    Raises:
        ValueError: a weight that is not a ViT / DINOv2 encoder's (named).
    """
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        key = re.sub(r"^(vit|dinov2|model)\.", "", key)
        if _SKIPPED.match(key):
            continue
        if match := _QKV.match(key):
            block, part, kind = match.groups()
            qkv.setdefault((block, kind), {})[part] = value
            continue
        for pattern, replacement in _TRANSFORMERS_TO_TIMM:
            if re.match(pattern, key):
                out[re.sub(pattern, replacement, key)] = value
                break
        else:
            raise ValueError(f"{key!r} is not a weight of a transformers ViT / DINOv2 encoder")
    for (block, kind), parts in qkv.items():
        out[f"blocks.{block}.attn.qkv.{kind}"] = torch.cat(
            [parts["query"], parts["key"], parts["value"]]
        )
    return out


def _weights_file(path: Path) -> Path:
    """The weights file of a file or a model folder (``model.safetensors`` first)."""
    if path.is_file():
        return path
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (path / name).is_file():
            return path / name
    raise EncoderNotFoundError(f"{path} holds no model.safetensors or pytorch_model.bin")


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        return load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True)


def transformers_trunk(timm_name: str, args: dict, weights: Path) -> nn.Module:
    """A timm ViT holding a transformers ViT / DINOv2 checkpoint's weights.

    The position embeddings are resampled when the checkpoint's patch grid differs from
    the model's (timm's ``resample_abs_pos_embed``, as timm does for its own weights).
    """
    model = timm.create_model(timm_name, pretrained=False, **args)
    state = transformers_vit_to_timm(_read_weights(_weights_file(weights)))
    if "pos_embed" in state and state["pos_embed"].shape != model.pos_embed.shape:
        prefix = 0 if getattr(model, "no_embed_class", False) else model.num_prefix_tokens
        state["pos_embed"] = resample_abs_pos_embed(
            state["pos_embed"], list(model.patch_embed.grid_size), num_prefix_tokens=prefix
        )
    model.load_state_dict(state, strict=True)
    return model


def pretrained_trunk(
    timm_name: str,
    kwargs: dict,
    *,
    hub: str | None,
    source: str | Path | None = None,
    cache_dir: str | Path | None = None,
    weights_format: str = "timm",
) -> nn.Module:
    """The encoder with its pretrained weights, built by timm from local files.

    Args:
        timm_name: The architecture (e.g. ``vit_large_patch16_224``).
        kwargs: Its timm arguments (from the model card).
        hub: The Hugging Face repository of the weights (e.g. ``MahmoodLab/UNI``).
        source: A local weights file or folder (overrides the cache).
        cache_dir: The Hugging Face cache (default: ``HF_HUB_CACHE``).
        weights_format: ``timm`` (timm / Hugging Face timm layout) or ``transformers``
            (a transformers ``ViTModel`` / ``Dinov2Model`` checkpoint, renamed for timm).
    """
    args = {**kwargs, "num_classes": 0}
    if weights_format == "transformers":
        if source is not None:
            path = Path(source)
            if not path.exists():
                raise EncoderNotFoundError(
                    f"encoder weights {path} not found; give a local file or folder"
                )
        elif hub is None:
            raise EncoderNotFoundError(f"{timm_name} has no Hub repository; give its weights")
        else:
            path = hub_snapshot(hub, cache_dir=cache_dir)
        return transformers_trunk(timm_name, args, path)
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
    spec = backbone_spec(name)
    target = trunk.vit if isinstance(trunk, ClassAndMeanTokens) else trunk
    try:  # timm loads the file into the registered architecture, then we copy it
        pretrained = pretrained_trunk(
            spec.timm_name,
            timm_kwargs(spec.kwargs),
            hub=spec.hub,
            source=source,
            cache_dir=cache_dir,
            weights_format=spec.weights_format,
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
