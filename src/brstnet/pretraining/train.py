"""The pretraining loop: SimCLR on tissue windows, checkpointed and exactly resumable.

The conventions of :mod:`brstnet.training.loop`: a local seed (the caller's random state
is untouched), shuffling and augmentation from two CPU generators seeded from ``seed``
(the same numbers with any number of loader workers), loss summed on the device and read
once per epoch, an atomic checkpoint after every epoch holding everything the next epoch
draws from, so a run killed at any point and rerun ends with an uninterrupted run's
weights. A checkpoint written by another pretraining (settings, windows) is not resumed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import DataLoader, RandomSampler

from ..models.backbones import backbone_spec
from ..seeding import local_seed
from ..training.checkpoint import LoopState
from ..training.data import InputNormaliser, PatchBatches, epoch_batches
from ..training.devices import (
    DeviceSetup,
    autocast,
    cudnn_autotune,
    first_step_timer,
    make_generator,
    resolve_device,
)
from ..training.optim import make_optimizer, make_scheduler
from .params import PretrainingParams
from .run_config import PretrainConfig
from .simclr import SimCLR, nt_xent, two_views
from .weights import PretrainedTrunk, save_trunk
from .windows import fold_window_rows

if TYPE_CHECKING:
    from ..st.patch_store import PatchStore

__all__ = ["PretrainConfig", "PretrainResult", "pretrain", "pretrain_sections", "windows_digest"]

logger = logging.getLogger(__name__)


@dataclass
class PretrainResult:
    """Per-epoch history and the trunk's final weights (on the CPU)."""

    history: list[dict] = field(default_factory=list)
    trunk_state: dict[str, torch.Tensor] = field(default_factory=dict)
    first_step_s: float | None = None


def windows_digest(windows: np.ndarray, rows: np.ndarray) -> str:
    """A hash of the rows and the pixels of the windows a run pretrains on (chunked: a
    memory-mapped store stays out of RAM)."""
    digest = hashlib.blake2b(digest_size=16)
    rows = np.asarray(rows, dtype=np.int64)
    digest.update(rows.tobytes())
    for start in range(0, len(rows), 1024):
        digest.update(np.ascontiguousarray(windows[rows[start : start + 1024]]).tobytes())
    return digest.hexdigest()


def _whole_batch(batch):
    return batch


def _loader(data: PatchBatches, batch_size: int, generator: torch.Generator, setup) -> DataLoader:
    """Shuffled whole batches (one store read each); an incomplete last batch is dropped
    unless it is the only one (contrastive losses want full batches of negatives)."""
    return DataLoader(
        data,
        batch_size=min(batch_size, len(data)),
        sampler=RandomSampler(data, generator=generator),
        generator=torch.Generator().manual_seed(0),  # see brstnet.training.data.make_loader
        collate_fn=_whole_batch,
        num_workers=setup.num_workers,
        pin_memory=setup.pin_memory,
        persistent_workers=setup.num_workers > 0,
        prefetch_factor=4 if setup.num_workers > 0 else None,
        drop_last=True,
    )


def pretrain(
    windows: np.ndarray,
    rows: np.ndarray,
    cfg: PretrainConfig,
    setup: DeviceSetup,
    *,
    checkpoint: Path | None = None,
    desc: str = "pretrain",
    fingerprint: str = "",
    on_epoch_end: Callable[[int], None] | None = None,
) -> PretrainResult:
    """Pretrain ``cfg.backbone`` with SimCLR on ``windows[rows]`` for ``cfg.epochs`` epochs.

    Args:
        windows: [N, H, W, 3] uint8 window store (a memory map is fine).
        rows: The rows to pretrain on (at least 2).
        cfg: Settings.
        setup: Device, precision, loader workers, compile.
        checkpoint: Written atomically after every epoch; resumed when it was written
            by the same run (settings, rows, ``fingerprint``).
        desc: Labels the progress bar and log lines.
        fingerprint: What else defines the run (the caller's hash of the windows).
        on_epoch_end: Called with the epoch number after each checkpoint.

    Raises:
        ValueError: fewer than 2 windows.
        FloatingPointError: a non-finite loss (no weights of that epoch are saved).
    """
    if len(rows) < 2:
        raise ValueError(
            f"{desc}: {len(rows)} tissue windows; contrastive pretraining needs at least 2 "
            "(lower pretraining.window_stride_um or check the slides' tissue)"
        )
    with local_seed(cfg.seed), cudnn_autotune(setup):
        return _pretrain(windows, rows, cfg, setup, checkpoint, desc, fingerprint, on_epoch_end)


def _pretrain(windows, rows, cfg, setup, checkpoint, desc, fingerprint, on_epoch_end):
    sampler_generator = make_generator(cfg.seed)
    augment_generator = make_generator(cfg.seed, stream=1)
    spec = backbone_spec(cfg.backbone)
    model = SimCLR(
        cfg.backbone, img_size=cfg.img_size, hidden=cfg.projection_hidden, out=cfg.projection_dim
    ).to(setup.device)
    if setup.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model.parameters(), cfg.loop, fused=setup.is_cuda)
    scheduler = make_scheduler(optimizer, cfg.loop)
    scaler = torch.amp.GradScaler(setup.device.type, enabled=setup.amp_dtype == torch.float16)
    signature = {
        "format": 2,  # 2: the settings under the parameters' names
        "config": asdict(cfg),
        "rows": hashlib.blake2b(np.asarray(rows, np.int64).tobytes(), digest_size=16).hexdigest(),
        "inputs": fingerprint,
    }
    loop_state = LoopState(
        model, optimizer, scheduler, scaler, sampler_generator, augment_generator, "model"
    )
    result, start = PretrainResult(), 0
    state = loop_state.resume(checkpoint, signature, desc=desc, other="by another pretraining")
    if state is not None:
        result.history = list(state["history"])
        start = int(state["epoch"])
    if start < cfg.epochs and setup.compile:
        model.compile(dynamic=False)  # in place: state_dict keys unchanged
    loader = _loader(PatchBatches(windows, rows), cfg.batch_size, sampler_generator, setup)
    normalise = InputNormaliser(
        spec.mean, spec.std, setup.device, channels_last=setup.channels_last
    )
    scanner = cfg.scanner
    for epoch in range(start, cfg.epochs):
        model.train()
        total = torch.zeros((), dtype=torch.float64, device=setup.device)
        seen, tic = 0, time.perf_counter()
        for batch in epoch_batches(loader, desc, epoch, cfg.epochs):
            with first_step_timer(result, setup):
                v1, v2 = two_views(
                    batch["images"],
                    normalise,
                    augment_generator,
                    crop_scale=cfg.crop_scale,
                    scanner=scanner,
                    flips=cfg.dihedral,
                )
                with autocast(setup):
                    z = model(torch.cat([v1, v2]))
                n = len(v1)
                loss = nt_xent(z[:n], z[n:], cfg.temperature)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                total += loss.detach().double() * n
                seen += n
        scheduler.step()
        mean_loss = float(total) / max(seen, 1)  # one host synchronisation per epoch
        if not np.isfinite(mean_loss):
            raise FloatingPointError(
                f"{desc}: the pretraining loss is not finite in epoch {epoch + 1}; no weights "
                "were saved for it. Lower pretraining.lr, or set pretraining.amp: false"
            )
        elapsed = time.perf_counter() - tic
        record = {
            "epoch": epoch + 1,
            "loss": mean_loss,
            "windows": seen,
            "images_per_s": 2 * seen / elapsed,  # two views per window
            "lr": optimizer.param_groups[0]["lr"],
        }
        result.history.append(record)
        logger.info(
            "%s epoch %d/%d: loss %.4f, %.1f images/s",
            desc,
            epoch + 1,
            cfg.epochs,
            mean_loss,
            record["images_per_s"],
        )
        if checkpoint is not None:
            loop_state.save(checkpoint, signature, epoch + 1, history=result.history)
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1)
    result.trunk_state = {
        k: v.detach().cpu().contiguous().clone() for k, v in model.trunk.state_dict().items()
    }
    return result


def pretrain_sections(
    windows: PatchStore, sections: list[str], pretraining: dict[str, Any], out_dir: Path
) -> Path:
    """Pretrain an encoder on ``sections``' tissue windows with the ``pretraining``
    parameters, as the pipeline does for a fold (the inner selection's encoders, one per
    inner split).

    Written to ``out_dir/<backbone>_<digest>.safetensors``, the digest of the parameters,
    sections and window geometry: the same request reuses the file, another never does;
    checkpoints in the folder of that name resume an interrupted run.
    """
    cfg = PretrainingParams.model_validate(pretraining)
    request = {
        "params": cfg.model_dump(exclude={"checkpoint_dir"}),
        "sections": sorted(sections),
        "geometry": windows.geometry.to_dict(),
    }
    digest = hashlib.sha256(json.dumps(request, sort_keys=True, default=str).encode())
    out = Path(out_dir) / f"{cfg.backbone}_{digest.hexdigest()[:12]}"
    path = out.with_suffix(".safetensors")
    if path.is_file():
        return path
    rows = fold_window_rows(windows.index, sections, max_windows=cfg.max_windows, seed=cfg.seed)
    setup = resolve_device(
        cfg.device, amp=cfg.amp, num_workers=cfg.num_workers, compile=cfg.compile
    )
    result = pretrain(
        windows.patches,
        rows,
        PretrainConfig.from_params(cfg, windows.geometry),
        setup,
        checkpoint=out / "simclr.pt",
        desc=f"pretrain {out.name}",
        fingerprint=windows_digest(windows.patches, rows) + str(windows.geometry.to_dict()),
    )
    metadata = {"backbone": cfg.backbone, "sections": sections, "windows": len(rows)}
    save_trunk(PretrainedTrunk(metadata, state=result.trunk_state, checkpoints=out), path)
    return path
