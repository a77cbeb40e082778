"""The project's parameters, typed: every pipeline's block is the pydantic model of the
layer that takes it (``brstnet.st.params``, ``brstnet.features.params``, ...), composed
here into :class:`ProjectParams`, which is validated before a run (a typo or a wrong
type fails at start and names the key)."""

from __future__ import annotations

from pydantic import model_validator

from brstnet.evaluation.params import EvaluationParams, RobustnessParams
from brstnet.features.params import (
    FeatureSelectionParams,
    InnerSplitParams,
    PanelParams,
    SplitParams,
    TargetParams,
)
from brstnet.inference.params import InferenceParams
from brstnet.pretraining.params import PretrainingParams
from brstnet.st.params import (
    DataProcessingParams,
    PatchParams,
    QCParams,
    SourceParams,
    StainParams,
)
from brstnet.strict import Strict
from brstnet.training.params import TrainingParams, variant_name

__all__ = [
    "DataProcessingParams",
    "EvaluationParams",
    "FeatureSelectionParams",
    "InferenceParams",
    "InnerSplitParams",
    "PanelParams",
    "PatchParams",
    "PretrainingParams",
    "ProjectParams",
    "QCParams",
    "RobustnessParams",
    "SourceParams",
    "SplitParams",
    "StainParams",
    "TargetParams",
    "TrainingParams",
    "variant_name",
]


class ProjectParams(Strict):
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
