"""Backbone registry, initial weights and the task's loss."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from brstnet.models import (
    BACKBONES,
    ExpressionModel,
    ExpressionTask,
    create_backbone,
    load_initial_weights,
)


def test_registry_holds_brstnet_stnet_and_cpu_backbones() -> None:
    brstnet = {n for n, s in BACKBONES.items() if s.group == "brstnet"}
    assert brstnet == {
        "resnet101",
        "inception_v3",
        "vit_base_patch16",
        "vit_base_patch32",
        *(f"efficientnet_b{i}" for i in range(6)),
    }
    assert "densenet121" in BACKBONES and "resnet18" in BACKBONES
    assert not [n for n in BACKBONES if "." in n]


@pytest.mark.parametrize("name", sorted(n for n, s in BACKBONES.items() if s.group != "foundation"))
def test_every_backbone_gives_pooled_features(name: str) -> None:
    """Built for real on CPU; the foundation encoders (up to 1.1 B parameters) are built on
    the meta device in tests/models/test_encoders.py."""
    size = 96 if name == "inception_v3" else 64  # Inception-v3's stem needs >= 75 px
    trunk, width = create_backbone(name, img_size=size)
    trunk.eval()
    with torch.no_grad():
        features = trunk(torch.zeros(2, 3, size, size))
    assert features.shape == (2, width)


def test_unknown_backbone_lists_the_valid_names() -> None:
    with pytest.raises(
        ValueError, match=r"unknown backbone 'resnet9000'.*; use one of densenet121, .*resnet18"
    ):
        create_backbone("resnet9000", img_size=64)


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_initial_weights_from_a_local_file(tmp_path: Path, suffix: str) -> None:
    source, _ = create_backbone("test_resnet", img_size=32)
    state = {k: v.clone() for k, v in source.state_dict().items()}
    state["fc.weight"] = torch.zeros(3, 3)  # a classifier the trunk does not have
    path = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save({"state_dict": state}, path)
    target, _ = create_backbone("test_resnet", img_size=32)
    load_initial_weights(target, path)
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value)
    partial = {k: v for i, (k, v) in enumerate(state.items()) if i % 2}
    torch.save(partial, tmp_path / "partial.pt")
    with pytest.raises(ValueError, match="lacks .* weights of the backbone"):
        load_initial_weights(target, tmp_path / "partial.pt")
    with pytest.raises(FileNotFoundError, match="give a local"):
        load_initial_weights(target, tmp_path / "absent.pt")


def _constant_task(n_main: int, n_aux: int, aux_weight: float, value: float) -> ExpressionTask:
    model = ExpressionModel("test_resnet", n_main=n_main, n_aux=n_aux, img_size=32)
    for head in (model.head, model.aux_head):
        if head is not None:
            torch.nn.init.zeros_(head.weight)
            torch.nn.init.constant_(head.bias, value)
    return ExpressionTask(model, aux_weight=aux_weight).eval()


def test_loss_values_by_hand() -> None:
    images = torch.zeros(2, 3, 32, 32)
    targets = torch.tensor(
        [[1.0, 3.0], [1.0, 1.0]]
    )  # output is 2 everywhere: squared errors 1, 1, 1, 1
    aux = torch.tensor([[2.0, 2.0, 5.0], [2.0, 2.0, 2.0]])  # squared errors 0,0,9,0,0,0 -> mean 1.5
    out = _constant_task(2, 3, 0.5, 2.0)(images, targets, aux)
    assert out["loss_main"].item() == pytest.approx(1.0)
    assert out["loss_aux"].item() == pytest.approx(1.5)
    assert out["loss"].item() == pytest.approx(1.0 + 0.5 * 1.5)
    assert out["output"].shape == (2, 2)


def test_no_auxiliary_is_the_same_code_with_weight_zero() -> None:
    images, targets = torch.zeros(2, 3, 32, 32), torch.ones(2, 2)
    without = _constant_task(2, 0, 1.0, 2.0)
    assert without.model.aux_head is None and without.aux_weight == 0.0
    out = without(images, targets, None)
    assert out["loss"].item() == pytest.approx(1.0) and out["loss_aux"].item() == 0.0
    zero_weight = _constant_task(2, 3, 0.0, 2.0)
    out = zero_weight(images, targets, torch.full((2, 3), 100.0))
    assert out["loss"].item() == pytest.approx(1.0)
    assert set(zero_weight(images)) == {"output"}  # prediction only


def test_the_depth_head_adds_its_loss_and_old_specs_build_without_it() -> None:
    import torch

    from brstnet.models import ModelSpec

    spec = ModelSpec.for_backbone(
        "test_resnet", n_main=3, img_size=32, n_aux=2, aux_weight=1.0, depth_weight=0.5
    )
    assert spec.predicts_depth and ModelSpec.from_dict(spec.to_dict()) == spec
    task = spec.build(seed=0)
    x = torch.randn(4, 3, 32, 32)
    targets, aux, depth = torch.randn(4, 3), torch.randn(4, 2), torch.randn(4)
    out = task(x, targets, aux, depth)
    assert out["depth"].shape == (4,)
    assert out["loss"].item() == pytest.approx(
        (out["loss_main"] + out["loss_aux"] + 0.5 * out["loss_depth"]).item(), rel=1e-6
    )
    assert out["loss_depth"].item() == pytest.approx(
        torch.mean((out["depth"] - depth) ** 2).item(), rel=1e-6
    )
    # a bundle written before the depth head: no depth_weight in its spec, no head
    old = {k: v for k, v in spec.to_dict().items() if k != "depth_weight"}
    assert not ModelSpec.from_dict(old).predicts_depth
    assert "depth" not in ModelSpec.from_dict(old).build(seed=0)(x)
    assert not any(
        k.startswith("model.depth_head") for k in ModelSpec.from_dict(old).build().state_dict()
    )


def test_a_detached_depth_head_learns_without_steering_the_trunk() -> None:
    """The default depth head trains on the features but passes no gradient to the trunk:
    a step with it moves the trunk and the gene heads exactly as a step without it."""
    import torch

    from brstnet.models import ModelSpec

    x, targets, depth = torch.randn(6, 3, 32, 32), torch.randn(6, 3), torch.randn(6)
    states = {}
    for name, weight, detach in (
        ("none", 0.0, True),
        ("detached", 1.0, True),
        ("steers", 1.0, False),
    ):
        spec = ModelSpec(
            "test_resnet", n_main=3, img_size=32, depth_weight=weight, depth_detach=detach
        )
        task = spec.build(seed=0)
        optimizer = torch.optim.SGD(task.parameters(), lr=0.1)
        task(x, targets, None, depth)["loss"].backward()
        optimizer.step()
        states[name] = {k: v for k, v in task.state_dict().items() if "depth_head" not in k}
    for key, value in states["none"].items():
        assert torch.equal(states["detached"][key], value), key
    trunk = [k for k in states["none"] if k.startswith("model.trunk") and "weight" in k]
    assert any(not torch.equal(states["steers"][k], states["none"][k]) for k in trunk)
