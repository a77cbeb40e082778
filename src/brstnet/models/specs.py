"""The backbone registry as plain data: short name -> how timm builds it.

The ten BrST-Net backbones (ResNet-101, Inception-v3, EfficientNet-B0..B5, ViT-B/16,
ViT-B/32), ST-Net's DenseNet-121, small CPU-friendly ones, pathology foundation encoders
and timm's tiny ``test_*`` models for unit tests. Names hold no "." (a "." would nest
Kedro namespaces). Nothing here imports torch: the parameters validate names against
this registry without loading a model library; :mod:`brstnet.models.backbones` builds
the trunks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..registry import lookup

#: timm's ImageNet input statistics, the default input normalisation of these backbones.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class BackboneSpec:
    """How to build one backbone with timm.

    Attributes:
        timm_name: The timm model name.
        takes_img_size: Pass the input size at creation (ViTs fix their patch grid).
        kwargs: Extra timm.create_model arguments, plain data: a layer is named by a key of
            :data:`brstnet.models.layers.LAYERS` (resolved when the model is built).
        group: "brstnet", "stnet", "cpu" or "test" (for documentation and sweeps).
        mean: Per-channel input mean (RGB, 0-1 scale) the backbone expects.
        std: Per-channel input standard deviation.
        hub: Foundation encoders: the Hugging Face repository of the pretrained weights
            (read from the local cache only, :mod:`brstnet.models.encoders`).
        um_per_px: Foundation encoders: the micrometres per pixel they were trained at.
        pooling: ``default`` (timm's pooled features) or ``class_mean`` (class token and
            mean patch token, concatenated: Virchow2).
        weights_format: ``timm`` or ``transformers`` (a transformers ViT / DINOv2
            checkpoint renamed into the timm model: Phikon, Phikon-v2).
    """

    timm_name: str
    takes_img_size: bool = False
    kwargs: dict = field(default_factory=dict)
    group: str = "cpu"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    hub: str | None = None
    um_per_px: float | None = None
    pooling: str = "default"
    weights_format: str = "timm"

    @property
    def is_encoder(self) -> bool:
        """A pretrained pathology foundation encoder (weights loaded before training)."""
        return self.hub is not None


#: H-optimus-0 / -1 input statistics (their model cards).
H_OPTIMUS_MEAN = (0.707223, 0.578729, 0.703617)
H_OPTIMUS_STD = (0.211883, 0.230117, 0.177517)
_H_OPTIMUS = {"init_values": 1e-5, "dynamic_img_size": False, "img_size": 224}
#: Virchow2's timm arguments (its model card): ViT-H/14, SwiGLU, 4 register tokens.
_VIRCHOW2 = {
    "img_size": 224,
    "init_values": 1e-5,
    "mlp_ratio": 5.3375,
    "reg_tokens": 4,
    "no_embed_class": True,
    "global_pool": "",
    "dynamic_img_size": True,
    "mlp_layer": "swiglu_packed",
    "act_layer": "silu",
}
#: ViT-H/14 with SwiGLU MLPs and 8 register tokens (UNI2-h's model card).
_UNI2_H = {
    "img_size": 224,
    "patch_size": 14,
    "depth": 24,
    "num_heads": 24,
    "init_values": 1e-5,
    "embed_dim": 1536,
    "mlp_ratio": 2.66667 * 2,
    "no_embed_class": True,
    "mlp_layer": "swiglu_packed",
    "act_layer": "silu",
    "reg_tokens": 8,
    "dynamic_img_size": True,
}
#: Prov-GigaPath's tile encoder (its model card): ViT-g/14 layout with 16 px patches.
_GIGAPATH = {
    "img_size": 224,
    "patch_size": 16,
    "embed_dim": 1536,
    "depth": 40,
    "num_heads": 24,
    "init_values": 1e-5,
    "mlp_ratio": 5.33334,
}


BACKBONES: dict[str, BackboneSpec] = {
    # BrST-Net's ten
    "resnet101": BackboneSpec("resnet101", group="brstnet"),
    "inception_v3": BackboneSpec("inception_v3", group="brstnet"),
    **{f"efficientnet_b{i}": BackboneSpec(f"efficientnet_b{i}", group="brstnet") for i in range(6)},
    "vit_base_patch16": BackboneSpec("vit_base_patch16_224", takes_img_size=True, group="brstnet"),
    "vit_base_patch32": BackboneSpec("vit_base_patch32_224", takes_img_size=True, group="brstnet"),
    # ST-Net
    "densenet121": BackboneSpec("densenet121", group="stnet"),
    # small, CPU-friendly
    "resnet18": BackboneSpec("resnet18"),
    "resnet34": BackboneSpec("resnet34"),
    "resnet50": BackboneSpec("resnet50"),
    "vit_small_patch16": BackboneSpec("vit_small_patch16_224", takes_img_size=True),
    # pathology foundation encoders: pretrained weights from local files only
    "uni": BackboneSpec(
        "vit_large_patch16_224",
        kwargs={"init_values": 1e-5, "dynamic_img_size": True},
        group="foundation",
        hub="MahmoodLab/UNI",
        um_per_px=0.5,
    ),
    "uni2_h": BackboneSpec(
        "vit_huge_patch14_224",
        kwargs=_UNI2_H,
        group="foundation",
        hub="MahmoodLab/UNI2-h",
        um_per_px=0.5,
    ),
    "virchow2": BackboneSpec(
        "vit_huge_patch14_224",
        kwargs=_VIRCHOW2,
        group="foundation",
        hub="paige-ai/Virchow2",
        um_per_px=0.5,
        pooling="class_mean",
    ),
    **{
        f"h_optimus_{i}": BackboneSpec(
            "vit_giant_patch14_reg4_dinov2",
            kwargs=_H_OPTIMUS,
            group="foundation",
            mean=H_OPTIMUS_MEAN,
            std=H_OPTIMUS_STD,
            hub=f"bioptimus/H-optimus-{i}",
            um_per_px=0.5,
        )
        for i in (0, 1)
    },
    "prov_gigapath": BackboneSpec(
        "vit_giant_patch14_dinov2",
        kwargs=_GIGAPATH,
        group="foundation",
        hub="prov-gigapath/prov-gigapath",
        um_per_px=0.5,
    ),
    # Owkin's Phikon (iBOT ViT-B/16) and Phikon-v2 (DINOv2 ViT-L/16), 224 px tiles at
    # 0.5 um/px, ImageNet statistics, the class token as the embedding (their model cards)
    "phikon": BackboneSpec(
        "vit_base_patch16_224",
        kwargs={"norm_layer": "layernorm_eps1e-12", "dynamic_img_size": True},
        group="foundation",
        hub="owkin/phikon",
        um_per_px=0.5,
        weights_format="transformers",
    ),
    "phikon_v2": BackboneSpec(
        "vit_large_patch16_224",
        kwargs={"init_values": 1.0, "dynamic_img_size": True},
        group="foundation",
        hub="owkin/phikon-v2",
        um_per_px=0.5,
        weights_format="transformers",
    ),
    # tiny models for tests
    "test_resnet": BackboneSpec("test_resnet", group="test"),
    "test_efficientnet": BackboneSpec("test_efficientnet", group="test"),
    "test_vit": BackboneSpec("test_vit", takes_img_size=True, group="test"),
    # a tiny encoder whose "pretrained" weights the tests write into a local HF cache
    "test_encoder": BackboneSpec(
        "test_vit",
        kwargs={"dynamic_img_size": True},
        group="test",
        mean=(0.6, 0.5, 0.7),
        std=(0.2, 0.2, 0.2),
        hub="brstnet-tests/test-encoder",
        um_per_px=0.5,
    ),
    # a tiny transformers ViT / DINOv2 (saved by the tests) read as Phikon / Phikon-v2 are
    **{
        f"test_transformers_{kind}": BackboneSpec(
            "vit_tiny_patch16_224",
            kwargs={
                "img_size": 32,
                "embed_dim": 32,
                "depth": 2,
                "num_heads": 2,
                "dynamic_img_size": True,
                **extra,
            },
            group="test",
            hub=f"brstnet-tests/test-{kind}",
            um_per_px=0.5,
            weights_format="transformers",
        )
        for kind, extra in (
            ("vit", {"norm_layer": "layernorm_eps1e-12"}),
            ("dinov2", {"init_values": 1.0}),
        )
    },
}


def backbone_spec(name: str) -> BackboneSpec:
    """The registry entry of ``name``.

    Raises:
        ValueError: unknown name, listing the valid ones.
    """
    return lookup(BACKBONES, name, "backbone", sort=True)
