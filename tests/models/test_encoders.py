"""Foundation encoders: architectures from their model cards, pretrained weights read
through timm from a local file, a local folder or the local Hugging Face cache, never
downloaded; a tiny timm ViT saved locally stands in for the real weights."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from timm.models import save_for_hf

from brstnet.config import TrainingParams
from brstnet.models import ModelSpec, backbone_spec, create_backbone
from brstnet.models.encoders import EncoderNotFoundError, hub_snapshot, load_encoder_weights
from brstnet.st.geometry import PatchGeometry
from brstnet.training.devices import resolve_device
from brstnet.training.fold_inputs import check_encoder_geometry
from brstnet.training.folds import FoldTraining
from tests.synthetic import (
    TEST_ENCODER_REPO,
    TEST_ENCODER_REVISION,
    save_test_encoder,
    stand_in_encoder,
    write_test_encoder_cache,
)

REPO = TEST_ENCODER_REPO


@pytest.fixture
def hf_cache(tmp_path: Path) -> tuple[Path, torch.nn.Module]:
    """A Hugging Face cache holding the encoder, laid out as huggingface_hub writes it."""
    model = stand_in_encoder()
    return write_test_encoder_cache(tmp_path / "hub", model), model


def _same_weights(trunk: torch.nn.Module, model: torch.nn.Module) -> bool:
    state = trunk.state_dict()
    return all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_weights_come_from_the_local_hf_cache(hf_cache) -> None:
    cache, model = hf_cache
    assert hub_snapshot(REPO, cache_dir=cache).name == TEST_ENCODER_REVISION
    trunk, width = create_backbone("test_encoder", img_size=32)
    assert not _same_weights(trunk, model)
    load_encoder_weights(trunk, "test_encoder", cache_dir=cache)
    assert _same_weights(trunk, model) and width == model.num_features


def test_weights_come_from_a_local_folder_or_file(tmp_path: Path) -> None:
    model = stand_in_encoder()
    folder = save_test_encoder(tmp_path / "encoder", model)
    for source in (folder, folder / "model.safetensors"):
        trunk, _ = create_backbone("test_encoder", img_size=32)
        load_encoder_weights(trunk, "test_encoder", source=source)
        assert _same_weights(trunk, model), source


def test_missing_weights_say_how_to_get_them_and_download_nothing(tmp_path: Path) -> None:
    trunk, _ = create_backbone("test_encoder", img_size=32)
    with pytest.raises(EncoderNotFoundError, match="huggingface-cli download brstnet-tests"):
        load_encoder_weights(trunk, "test_encoder", cache_dir=tmp_path / "empty")
    with pytest.raises(EncoderNotFoundError, match="not found"):
        load_encoder_weights(trunk, "test_encoder", source=tmp_path / "nowhere.safetensors")
    assert not (tmp_path / "empty").exists() or not any((tmp_path / "empty").rglob("*.safetensors"))


def test_weights_of_another_architecture_are_refused(tmp_path: Path) -> None:
    other = timm.create_model("test_vit", num_classes=0, embed_dim=32, num_heads=2)
    folder = tmp_path / "other"
    save_for_hf(other, str(folder), safe_serialization=True)
    trunk, _ = create_backbone("test_encoder", img_size=32)
    with pytest.raises(ValueError, match="do not fit its architecture test_vit"):
        load_encoder_weights(trunk, "test_encoder", source=folder / "model.safetensors")


def test_fold_training_starts_from_the_pretrained_encoder(hf_cache) -> None:
    cache, model = hf_cache
    spec = ModelSpec.for_backbone("test_encoder", n_main=3, img_size=32)
    assert (spec.mean, spec.std) == ((0.6, 0.5, 0.7), (0.2, 0.2, 0.2))  # its own statistics
    cfg = TrainingParams(backbones=["test_encoder"], hf_cache_dir=str(cache))
    job = FoldTraining(None, None, spec, cfg, resolve_device("cpu"), Path("unused"), "t")
    task = job.new_task()
    assert _same_weights(task.model.trunk, model)


def test_encoder_geometry_is_checked_in_micrometres(caplog) -> None:
    with caplog.at_level(logging.WARNING):
        check_encoder_geometry("test_encoder", PatchGeometry(150.0, 112))  # 1.34 um/px
    assert "set data_processing.patches.window_um to 56 for 112 px" in caplog.text
    caplog.clear()
    check_encoder_geometry("test_encoder", PatchGeometry(16.0, 32))  # 0.5 um/px
    assert caplog.text == ""
    with pytest.raises(ValueError, match="takes 224 px inputs"):
        check_encoder_geometry("h_optimus_0", PatchGeometry(112.0, 112))


@pytest.mark.parametrize(
    ("name", "width"),
    [
        ("uni", 1024),
        ("uni2_h", 1536),
        ("virchow2", 2560),
        ("h_optimus_0", 1536),
        ("h_optimus_1", 1536),
        ("prov_gigapath", 1536),
    ],
)
def test_registered_encoders_have_their_published_embedding_width(name: str, width: int) -> None:
    """Built on the meta device (no memory, no weights): the architecture of each model
    card gives the embedding width it publishes."""
    with torch.device("meta"):
        trunk, got = create_backbone(name, img_size=224)
        out = trunk(torch.empty(2, 3, 224, 224))
    assert got == width and tuple(out.shape) == (2, width)
    assert backbone_spec(name).is_encoder and backbone_spec(name).um_per_px == 0.5
    assert np.isfinite(backbone_spec(name).mean).all()
