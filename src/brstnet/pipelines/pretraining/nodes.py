"""Thin adapters over :mod:`brstnet.pretraining` (its modules import torch: lazy modules,
loaded when a node first runs, so listing the pipelines stays fast)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from brstnet.config import DataProcessingParams, PretrainingParams
from brstnet.metrics.headline import TRAIN_SECONDS
from brstnet.st.patches import PatchStore  # resolvable at run time: Kedro reads the hints

from ..data_processing.nodes import spots_loader
from ..nodes_common import lazy_module, parse

if TYPE_CHECKING:
    import brstnet.evaluation.tracking as tracking
    import brstnet.pretraining.train as pretraining_train
    import brstnet.pretraining.weights as pretraining_weights
    import brstnet.pretraining.windows as windows
    import brstnet.training.devices as devices
else:
    tracking = lazy_module("brstnet.evaluation.tracking")
    pretraining_train = lazy_module("brstnet.pretraining.train")
    pretraining_weights = lazy_module("brstnet.pretraining.weights")
    windows = lazy_module("brstnet.pretraining.windows")
    devices = lazy_module("brstnet.training.devices")


def cut_tissue_windows(
    sections: dict, stain_reference: dict, data_processing: dict[str, Any], pretraining: dict
) -> windows.WindowStoreBuild:
    """Every section's tissue windows, in the patch store's geometry and stain
    normalisation (``pretraining_windows``; written section by section, resumable)."""
    dp = parse(DataProcessingParams, data_processing)
    cfg = parse(PretrainingParams, pretraining)
    return windows.WindowStoreBuild(
        # loaders stay lazy (one section in memory at a time) and read no counts
        {name: spots_loader(section) for name, section in sorted(sections.items())},
        dp.geometry(stain_reference),
        stride_um=cfg.window_stride_um,
        dataset=dp.dataset,
    )


def pretrain_fold(
    pretraining_windows: PatchStore, splits: pd.DataFrame, pretraining: dict[str, Any], *, fold: int
) -> tuple[pretraining_weights.PretrainedTrunk, pd.DataFrame, tracking.TrackedRun]:
    """Pretrain fold ``fold``'s encoder on its sections' tissue windows.

    Returns:
        ``pretrained_<tag>_fold<k>`` (the trunk's weights, written as .safetensors),
        ``pretraining_history_<tag>_fold<k>`` (loss and images/s per epoch) and
        ``pretraining_run_<tag>_fold<k>`` (the MLflow run: settings, loss per epoch).
    """
    cfg = parse(PretrainingParams, pretraining)
    store = pretraining_windows
    geometry = store.geometry
    sections = windows.fold_sections(splits, fold, include_target=cfg.include_target_slides)
    rows = windows.fold_window_rows(
        store.index, sections, max_windows=cfg.max_windows, seed=cfg.seed
    )
    config = pretraining_train.PretrainConfig.from_params(cfg, geometry)
    name = f"{cfg.tag}_fold{fold}"
    checkpoints = Path(cfg.checkpoint_dir) / f"pretrain_{name}"
    setup = devices.resolve_device(
        cfg.device, amp=cfg.amp, num_workers=cfg.num_workers, compile=cfg.compile
    )
    started = time.time()
    result = pretraining_train.pretrain(
        store.patches,
        rows,
        config,
        setup,
        checkpoint=checkpoints / "simclr.pt",
        desc=f"pretrain {name}",
        fingerprint=pretraining_train.windows_digest(store.patches, rows) + str(geometry.to_dict()),
    )
    ended = time.time()
    metadata = {
        "backbone": cfg.backbone,
        "img_size": geometry.size_px,
        "fold": fold,
        "method": cfg.method,
        "sections": sections,
        "include_target_slides": cfg.include_target_slides,
        "windows": len(rows),
        "epochs": cfg.epochs,
        "window_um": geometry.window_um,
        "stride_um": store.meta.get("stride_um"),
    }
    trunk = pretraining_weights.PretrainedTrunk(
        metadata, state=result.trunk_state, checkpoints=checkpoints
    )
    history = pd.DataFrame(result.history)
    run = tracking.TrackedRun(
        name=f"pretrain_{name}",
        params={
            **{k: v for k, v in cfg.model_dump().items() if k != "checkpoint_dir"},
            "fold": fold,
            "sections": ",".join(sections),
            "windows": len(rows),
            "patch_size_px": geometry.size_px,
            "window_um": geometry.window_um,
            "device": str(setup.device),
        },
        metrics={
            "final_loss": float(history["loss"].iloc[-1]) if len(history) else float("nan"),
            "windows": float(len(rows)),
            TRAIN_SECONDS.name: ended - started,
        },
        histories={
            "ssl_loss": history["loss"].tolist() if len(history) else [],
            "images_per_s": history["images_per_s"].tolist() if len(history) else [],
        },
        tags={"brstnet.kind": "pretraining"},
        start_time=started,
        end_time=ended,
    )
    return trunk, history, run
