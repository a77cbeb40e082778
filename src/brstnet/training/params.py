"""Typed ``model_training`` parameters: what the training loop, the folds and the
frozen-encoder probes take, and the variant names they give."""

from __future__ import annotations

from typing import Literal, NamedTuple

from pydantic import Field, field_validator, model_validator

from ..models.specs import BACKBONES
from ..strict import Strict


class TrainingParams(Strict):
    """The ``model_training`` block: the loop's settings (under the names
    :class:`~brstnet.training.optim.LoopConfig` takes), the variants to train (backbones x
    auxiliary weights x contexts), frozen-encoder probes and initial weights."""

    device: str = "auto"
    amp: bool = True  # CUDA: bfloat16 where supported, else float16 with a gradient scaler
    compile: bool | Literal["auto"] = "auto"  # torch.compile; auto: on CUDA only
    num_workers: int | None = Field(None, ge=0)  # None: 0 on CPU, up to 8 on GPU
    seed: int = 0
    epochs: int = Field(50, ge=1)
    batch_size: int = Field(32, ge=1)
    # lr is the rate at lr_reference_batch; a larger batch scales it (none | linear | sqrt)
    lr_scaling: Literal["none", "linear", "sqrt"] = "none"
    lr_reference_batch: int = Field(32, ge=1)
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(1e-3, gt=0)
    momentum: float = Field(0.9, ge=0)
    weight_decay: float = Field(1e-6, ge=0)
    scheduler: Literal["cosine", "constant"] = "cosine"
    final: Literal["retrain", "best_checkpoint"] = "retrain"
    dihedral: bool = True
    color_jitter: float = Field(0.0, ge=0.0, le=1.0)
    # other scanners and stain protocols (brstnet.training.augment), 0 / null = off
    stain_jitter: float = Field(0.0, ge=0.0, le=1.0)  # HED scale U(1 -/+ s), shift U(-/+ 0.1 s)
    resolution_jitter_um: float | None = Field(None, gt=0)  # coarsest simulated um/px
    blur_sigma_um: float = Field(0.0, ge=0.0)  # largest Gaussian sigma, micrometres
    initial_weights: str | None = None  # a local .safetensors / .pt file for the trunk
    # pretrained: each fold's trunk starts from that fold's self-supervised weights (the
    # pretraining pipeline, backbone pretraining.backbone; variants named <...>_ssl)
    init: Literal["pretrained"] | None = None
    # true: a PCA + ridge probe on each fold's frozen self-supervised encoder (variant
    # <pretraining.backbone>_ssl_probe), next to HEST-Bench's encoder table
    ssl_probe: bool = False
    # foundation encoders (uni, virchow2, h_optimus_0, ...): name -> local weights file or
    # folder; unlisted ones are read from the local Hugging Face cache, never downloaded
    encoder_weights: dict[str, str] = Field(default_factory=dict)
    hf_cache_dir: str | None = None  # None: HF_HUB_CACHE / ~/.cache/huggingface/hub
    checkpoint_dir: str = "data/06_models/checkpoints"
    backbones: list[str] = Field(default_factory=list)  # names from brstnet.models.BACKBONES
    # frozen foundation encoders: features once per spot, a ridge probe per fold
    # (variants <encoder>_probe); names of encoders in brstnet.models.BACKBONES
    probes: list[str] = Field(default_factory=list)
    aux_weights: list[float] = Field(
        default_factory=lambda: [1.0, 0.0], min_length=1
    )  # 0 = no auxiliary head
    # d in loss = MSE(main) + w * MSE(aux) + d * MSE(depth): a head for the spot's log read
    # depth (z-scored), so predictions give counts on the training scale; 0 = no depth head
    depth_weight: float = Field(1.0, ge=0.0)
    # true: the depth head learns from the features without steering the trunk towards
    # read depth (its loss trains the head only); false: the depth loss trains the trunk too
    depth_detach: bool = True
    # spatial context per variant: false = the spot's patch alone; true = the heads also
    # read the spot's grid neighbours and its section (variants named <...>_ctx)
    contexts: list[bool] = Field(default_factory=lambda: [False], min_length=1)

    @field_validator("backbones")
    @classmethod
    def _known_backbones(cls, backbones: list[str]) -> list[str]:

        unknown = [b for b in backbones if b not in BACKBONES]
        if unknown:
            raise ValueError(f"unknown backbones {unknown}; valid: {', '.join(sorted(BACKBONES))}")
        return backbones

    @field_validator("probes")
    @classmethod
    def _known_encoders(cls, probes: list[str]) -> list[str]:

        wrong = [p for p in probes if p not in BACKBONES or not BACKBONES[p].is_encoder]
        if wrong:
            encoders = sorted(n for n, s in BACKBONES.items() if s.is_encoder)
            raise ValueError(
                f"probes {wrong} are not foundation encoders; valid: {', '.join(encoders)}"
            )
        return probes

    @model_validator(mode="after")
    def _something_to_train(self) -> TrainingParams:
        if not self.backbones and not self.probes and not self.ssl_probe:
            raise ValueError("give at least one of backbones, probes or ssl_probe: true")
        if self.init == "pretrained" and self.initial_weights:
            raise ValueError(
                "init: pretrained and initial_weights both set the initial trunk; keep one"
            )
        return self

    @field_validator("aux_weights")
    @classmethod
    def _non_negative(cls, weights: list[float]) -> list[float]:
        if any(w < 0 for w in weights):
            raise ValueError(f"aux_weights must be >= 0, got {weights}")
        return weights


class Variant(NamedTuple):
    """One model variant: a backbone with an auxiliary weight (0 = no auxiliary head),
    trained (``finetune``) or a frozen encoder with a ridge probe (``probe``), and
    whether it reads the spots' spatial context; its own settings next to the
    ``model_training`` parameters its variants share.

    Attributes:
        name: The variant's name (:func:`variant_name`), in file, namespace and run names.
        backbone: A name from :data:`brstnet.models.BACKBONES`.
        aux_weight: The auxiliary head's loss weight (0: no auxiliary head).
        kind: ``finetune``, ``probe`` (a frozen encoder) or ``ssl_probe`` (a pretrained one).
        context: The heads also read the spot's grid neighbours and its section.
    """

    name: str
    backbone: str
    aux_weight: float
    kind: str = "finetune"
    context: bool = False


def variant_name(
    backbone: str, aux_weight: float, context: bool = False, smoothed: bool = False
) -> str:
    """``resnet18_aux`` (w = 1), ``resnet18_noaux`` (w = 0), ``resnet18_aux0p5`` (w = 0.5);
    ``_ctx`` appended for a spatial-context model (``resnet18_aux_ctx``), ``_smooth`` for
    targets smoothed over neighbouring spots."""
    suffix = ("_ctx" if context else "") + ("_smooth" if smoothed else "")
    if aux_weight == 0:
        return f"{backbone}_noaux{suffix}"
    if aux_weight == 1:
        return f"{backbone}_aux{suffix}"
    return f"{backbone}_aux{aux_weight:g}".replace(".", "p") + suffix
