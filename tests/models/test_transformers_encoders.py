"""Phikon / Phikon-v2: transformers ViT and DINOv2 checkpoints, in the format their Hub
repositories publish (``save_pretrained``: config.json + model.safetensors), renamed into
timm's ViT; the timm model must embed a tile exactly as the transformers model does."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import transformers

from brstnet.models import backbone_spec, create_backbone
from brstnet.models.encoders import load_encoder_weights, transformers_vit_to_timm

TINY = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "patch_size": 16,
    "image_size": 32,
    "qkv_bias": True,
}


def _transformers_model(kind: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if kind == "vit":  # Phikon: ViTModel, layer norm eps 1e-12, CLS of last_hidden_state
        config = transformers.ViTConfig(**TINY, intermediate_size=128, layer_norm_eps=1e-12)
        model = transformers.ViTModel(config, add_pooling_layer=True)
    else:  # Phikon-v2: Dinov2Model with layer scale
        config = transformers.Dinov2Config(**TINY, mlp_ratio=4, layerscale_value=1.0)
        model = transformers.Dinov2Model(config)
    with torch.no_grad():  # layer scales and biases away from their initial values
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


def _hub_cache(cache: Path, repo: str, model: torch.nn.Module) -> Path:
    """``model`` saved as huggingface_hub lays a downloaded repository out."""
    folder = cache / f"models--{repo.replace('/', '--')}"
    model.save_pretrained(folder / "snapshots" / ("0" * 40), safe_serialization=True)
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text("0" * 40)
    return cache


@pytest.mark.parametrize("kind", ["vit", "dinov2"])
def test_the_timm_trunk_embeds_as_the_transformers_model(kind: str, tmp_path: Path) -> None:
    reference = _transformers_model(kind)
    name = f"test_transformers_{kind}"
    cache = _hub_cache(tmp_path / "hub", backbone_spec(name).hub, reference)
    trunk, width = create_backbone(name, img_size=32)
    load_encoder_weights(trunk, name, cache_dir=cache)
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        expected = reference(pixel_values=x).last_hidden_state[:, 0]
        got = trunk.eval()(x)
    assert width == 32 and got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_a_local_folder_or_file_is_read_too(tmp_path: Path) -> None:
    reference = _transformers_model("vit")
    reference.save_pretrained(tmp_path / "phikon", safe_serialization=True)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        expected = reference(pixel_values=x).last_hidden_state[:, 0]
    for source in (tmp_path / "phikon", tmp_path / "phikon" / "model.safetensors"):
        trunk, _ = create_backbone("test_transformers_vit", img_size=32)
        load_encoder_weights(trunk, "test_transformers_vit", source=source)
        with torch.no_grad():
            torch.testing.assert_close(trunk.eval()(x), expected, rtol=1e-4, atol=1e-5)


def test_a_checkpoint_of_another_tile_size_has_its_position_embeddings_resampled(
    tmp_path: Path,
) -> None:
    config = transformers.Dinov2Config(**{**TINY, "image_size": 64}, layerscale_value=1.0)
    transformers.Dinov2Model(config).save_pretrained(tmp_path / "big", safe_serialization=True)
    trunk, _ = create_backbone("test_transformers_dinov2", img_size=32)
    load_encoder_weights(trunk, "test_transformers_dinov2", source=tmp_path / "big")
    assert trunk.pos_embed.shape == (1, 1 + 2 * 2, 32)  # 4 x 4 patches resampled to 2 x 2


def test_weights_of_another_model_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="'classifier.weight' is not a weight"):
        transformers_vit_to_timm({"classifier.weight": torch.zeros(2, 2)})


def test_the_registered_phikons_have_their_model_cards_shapes() -> None:
    with torch.device("meta"):
        base, base_width = create_backbone("phikon", img_size=224)
        large, large_width = create_backbone("phikon_v2", img_size=224)
    assert (base_width, len(base.blocks), base.norm.eps) == (768, 12, 1e-12)
    assert (large_width, len(large.blocks), large.patch_embed.patch_size) == (1024, 24, (16, 16))
    assert large.blocks[0].ls1.gamma.shape == (1024,)
