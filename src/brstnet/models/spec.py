"""The model's shape as a small frozen type, saved in every bundle (like a timm
pretrained config or a Hugging Face ``config.json``) and used to build the model for
training, evaluation and inference alike."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from .specs import IMAGENET_MEAN, IMAGENET_STD, backbone_spec

if TYPE_CHECKING:
    from .task import ExpressionTask


@dataclass(frozen=True)
class ModelSpec:
    """Everything that fixes the model's architecture and its input.

    Attributes:
        backbone: A name from :data:`brstnet.models.BACKBONES`.
        n_main: Main-panel genes (outputs of the main head).
        img_size: Input side in pixels.
        n_aux: Auxiliary genes; 0 builds no auxiliary head.
        aux_weight: w in MSE(main) + w * MSE(aux); 0 when there is no auxiliary head.
        mean: Per-channel input mean (RGB, 0-1 scale).
        std: Per-channel input standard deviation.
        depth_weight: d in ... + d * MSE(depth): a one-output head predicts the spot's
            log read depth (z-scored); 0 builds no depth head (bundles written before it).
        context: Spatial context: the heads also read the spot's grid neighbours and its
            section (:class:`~brstnet.models.task.SpotContext`).
        depth_detach: The depth head's loss trains the depth head only, not the trunk
            (it learns the depth from the features without steering them towards it).
    """

    backbone: str
    n_main: int
    img_size: int
    n_aux: int = 0
    aux_weight: float = 0.0
    mean: tuple[float, float, float] = field(default=IMAGENET_MEAN)
    std: tuple[float, float, float] = field(default=IMAGENET_STD)
    depth_weight: float = 0.0
    context: bool = False
    depth_detach: bool = True

    def __post_init__(self) -> None:
        if self.n_main < 1:
            raise ValueError(f"n_main must be >= 1, got {self.n_main}")
        if self.n_aux < 0 or self.aux_weight < 0 or self.depth_weight < 0:
            raise ValueError(
                "n_aux, aux_weight and depth_weight must be >= 0, got "
                f"{self.n_aux}, {self.aux_weight}, {self.depth_weight}"
            )
        if self.n_aux == 0 and self.aux_weight:
            object.__setattr__(self, "aux_weight", 0.0)  # no head, no auxiliary loss
        if self.aux_weight == 0 and self.n_aux:
            object.__setattr__(self, "n_aux", 0)  # weight 0: the same model as no head
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))

    @classmethod
    def for_backbone(
        cls,
        backbone: str,
        *,
        n_main: int,
        img_size: int,
        n_aux: int = 0,
        aux_weight: float = 0.0,
        depth_weight: float = 0.0,
        context: bool = False,
        depth_detach: bool = True,
    ) -> ModelSpec:
        """A spec with the backbone's own input normalisation (from the registry)."""
        entry = backbone_spec(backbone)
        return cls(
            backbone,
            n_main,
            img_size,
            n_aux,
            aux_weight,
            entry.mean,
            entry.std,
            depth_weight,
            context,
            depth_detach,
        )

    @property
    def uses_aux(self) -> bool:
        return self.n_aux > 0

    @property
    def predicts_depth(self) -> bool:
        """The model has a depth head (log read depth of the spot)."""
        return self.depth_weight > 0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["mean"], out["std"] = list(self.mean), list(self.std)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        return cls(**{**data, "mean": tuple(data["mean"]), "std": tuple(data["std"])})

    def build(self, *, seed: int | None = None) -> ExpressionTask:
        """The task (model + loss) on CPU, with fresh weights.

        Args:
            seed: Seeds the weight initialisation inside a forked RNG, so the
                process-wide random state is left as it was.
        """
        # deferred: the spec is read without torch (bundle metadata, parameter checks)
        from ..seeding import local_seed
        from .task import ExpressionModel, ExpressionTask

        def make() -> ExpressionTask:
            model = ExpressionModel(
                self.backbone,
                n_main=self.n_main,
                n_aux=self.n_aux,
                img_size=self.img_size,
                mean=self.mean,
                std=self.std,
                depth_head=self.predicts_depth,
                context=self.context,
                depth_detach=self.depth_detach,
            )
            return ExpressionTask(model, aux_weight=self.aux_weight, depth_weight=self.depth_weight)

        if seed is None:
            return make()
        with local_seed(seed):
            return make()
