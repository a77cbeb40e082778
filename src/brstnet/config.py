"""Typed parameters: each pipeline's parameter block becomes a pydantic model at the
node boundary, so a typo or a wrong type fails at start and names the key."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from brstnet.registry import unknown_name
from brstnet.st.params import (  # noqa: F401 (the data_processing block, re-exported)
    DataProcessingParams,
    PatchParams,
    QCParams,
    SourceParams,
    StainParams,
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InnerSplitParams(_Strict):
    scheme: Literal["holdout", "kfold"] = "holdout"
    k: int = Field(4, ge=2)
    val_fraction: float = Field(0.25, gt=0.0, lt=1.0)


class SplitParams(_Strict):
    scheme: Literal["lopo", "kfold", "fixed"] = "lopo"
    k: int = Field(5, ge=2)
    test_patients: list[str] = Field(default_factory=list)
    stratify: bool = False  # kfold: balance folds over subtypes (he2020's metadata 'type')
    inner: InnerSplitParams = InnerSplitParams()
    seed: int = 0


class PanelParams(_Strict):
    method: Literal["top_mean", "hvg"] = "top_mean"
    n_genes: int = Field(250, ge=1)
    min_detection: float = Field(0.10, ge=0.0, le=1.0)
    aux_max_genes: int | None = Field(None, ge=0)


class TargetParams(_Strict):
    # library (the field's: normalize_total to 1e4, log1p) | log1p (BrST-Net) | stnet
    transform: Literal["log1p", "stnet", "library"] = "library"
    zscore: bool = True
    # neighbours: targets averaged over each spot's 3 x 3 grid neighbours (TRIPLEX, DKAN);
    # variants are then named <...>_smooth and every table labels the targets
    smoothing: Literal["none", "neighbours"] = "none"


class FeatureSelectionParams(_Strict):
    split: SplitParams = SplitParams()
    panel: PanelParams = PanelParams()
    targets: TargetParams = TargetParams()


class TrainingParams(_Strict):
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
        from brstnet.models.backbones import BACKBONES  # names hold no "." (Kedro namespaces)

        unknown = [b for b in backbones if b not in BACKBONES]
        if unknown:
            raise ValueError(f"unknown backbones {unknown}; valid: {', '.join(sorted(BACKBONES))}")
        return backbones

    @field_validator("probes")
    @classmethod
    def _known_encoders(cls, probes: list[str]) -> list[str]:
        from brstnet.models.backbones import BACKBONES

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


class PretrainingParams(_Strict):
    """Self-supervised pretraining on tissue windows (:mod:`brstnet.pretraining`)."""

    backbone: str = "resnet18"  # a name from brstnet.models.BACKBONES
    method: Literal["simclr"] = "simclr"
    # windows: the patch store's geometry, tiled every window_stride_um (null: the window,
    # no overlap), kept at <= data_processing.qc.max_background_fraction background
    window_stride_um: float | None = Field(None, gt=0)
    max_windows: int | None = Field(None, ge=2)  # per fold, drawn with seed; null: all
    # false: fold k pretrains on its training patients' slides only; true: also on its
    # held-out patients' (unlabelled target slides; variants get the suffix _tgt)
    include_target_slides: bool = False
    device: str = "auto"
    amp: bool = True
    compile: bool | Literal["auto"] = "auto"
    num_workers: int | None = Field(None, ge=0)
    seed: int = 0
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(64, ge=2)
    optimizer: Literal["sgd", "adamw"] = "adamw"
    lr: float = Field(1e-3, gt=0)
    momentum: float = Field(0.9, ge=0)
    weight_decay: float = Field(1e-6, ge=0)
    scheduler: Literal["cosine", "constant"] = "cosine"
    temperature: float = Field(0.2, gt=0)  # NT-Xent tau
    projection_hidden: int = Field(512, ge=1)
    projection_dim: int = Field(128, ge=1)
    # views: random resized crop (smallest area fraction; 1 = off), HED stain jitter,
    # optional resolution / blur (brstnet.training.augment), flips + 90 degree rotations
    crop_scale: float = Field(0.5, gt=0, le=1)
    stain_jitter: float = Field(0.1, ge=0.0, le=1.0)
    resolution_jitter_um: float | None = Field(None, gt=0)
    blur_sigma_um: float = Field(0.0, ge=0.0)
    dihedral: bool = True
    checkpoint_dir: str = "data/06_models/checkpoints"
    # the SSL probe (model_training.ssl_probe): standardise, PCA, ridge (HEST-Bench: 256,
    # fixed penalty 100 / (components x genes) = hest; loo: penalty by leave-one-out)
    probe_pca_dims: int | None = Field(256, ge=1)
    probe_ridge: Literal["hest", "loo"] = "hest"

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, backbone: str) -> str:
        from brstnet.models.backbones import BACKBONES

        if backbone not in BACKBONES:
            raise ValueError(unknown_name(backbone, sorted(BACKBONES), "backbone"))
        return backbone

    @property
    def tag(self) -> str:
        """Names the weights of one setting: ``<backbone>`` or ``<backbone>_tgt``."""
        return self.backbone + ("_tgt" if self.include_target_slides else "")


class RobustnessParams(_Strict):
    """Held-out sections re-cut from degraded copies of their images (brstnet.evaluation.robustness)."""

    enabled: bool = True
    pixel_sizes_um: list[float] = Field(default_factory=lambda: [2.0, 4.0])
    stain_shifts: list[float] = Field(default_factory=lambda: [0.3])
    jpeg_qualities: list[int] = Field(default_factory=lambda: [50])

    @field_validator("pixel_sizes_um", "stain_shifts")
    @classmethod
    def _positive(cls, values: list[float]) -> list[float]:
        if any(not (v > 0) for v in values):
            raise ValueError(f"values must be > 0, got {values}")
        return values

    @field_validator("jpeg_qualities")
    @classmethod
    def _quality(cls, values: list[int]) -> list[int]:
        if any(not 1 <= v <= 95 for v in values):
            raise ValueError(f"JPEG qualities are 1-95, got {values}")
        return values

    def conditions(self) -> list:
        """The original and the degradations (none when disabled)."""
        from brstnet.evaluation.robustness import conditions

        if not self.enabled:
            return []
        return conditions(
            pixel_sizes_um=self.pixel_sizes_um,
            stain_shifts=self.stain_shifts,
            jpeg_qualities=self.jpeg_qualities,
        )


class EvaluationParams(_Strict):
    device: str = "auto"
    batch_size: int = Field(64, ge=1)
    tta: bool = False  # mean over the 8 flips / rotations (ST-Net)
    alpha: float = Field(0.1, gt=0, lt=1)  # Holm-corrected sign test (ST-Net)
    map_genes: list[str] = Field(default_factory=lambda: ["ERBB2"])  # drawn when in the panel
    n_best_genes: int = Field(3, ge=0)
    robustness: RobustnessParams = RobustnessParams()


class InferenceParams(_Strict):
    model: str  # a bundle folder (data/06_models/<variant>_fold<k>) or runs:/<run id>/model/fold<k>
    slides: dict[str, str] = Field(min_length=1)  # name -> H&E image path
    pixel_size_um: dict[str, float] = Field(
        default_factory=dict
    )  # name -> um/px; else the TIFF tags
    pitch_um: float = Field(200.0, gt=0)
    genes: list[str] = Field(
        default_factory=list
    )  # drawn; empty: ERBB2 and the panel's first genes
    tta: bool = False
    device: str = "auto"
    batch_size: int = Field(64, ge=1)


class ProjectParams(_Strict):
    """Every parameter block of the project: one typed model, validated before a run."""

    data_processing: DataProcessingParams = DataProcessingParams()
    feature_selection: FeatureSelectionParams = FeatureSelectionParams()
    model_training: TrainingParams
    evaluation: EvaluationParams = EvaluationParams()
    inference: InferenceParams | None = None
    pretraining: PretrainingParams = PretrainingParams()

    @model_validator(mode="after")
    def _pretrained_backbones(self) -> ProjectParams:
        training, backbone = self.model_training, self.pretraining.backbone
        other = [b for b in training.backbones if b != backbone]
        if training.init == "pretrained" and other:
            raise ValueError(
                f"model_training.init: pretrained starts every backbone from "
                f"pretraining.backbone {backbone}, but backbones also lists {other}; set "
                f"model_training.backbones: [{backbone}]"
            )
        return self
