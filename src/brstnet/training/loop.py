"""The training loop: epochs, validation r, atomic checkpoints and resume.

The loop knows ``loss.backward()`` and logs whatever loss components the task returns.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..metrics import partial_pearson_per_gene, pearson_per_gene
from ..metrics.validation import VAL_MEAN_R, Validation, validation_scores
from ..seeding import local_seed
from .checkpoint import LoopState, batches_digest
from .context import ContextBank, require_neighbours, uses_context
from .data import InputNormaliser, PatchBatches, color_jitter, dihedral, epoch_batches, make_loader
from .devices import (
    DeviceSetup,
    autocast,
    cudnn_autotune,
    first_step_timer,
    make_generator,
)
from .optim import LoopConfig, make_optimizer, make_scheduler
from .predict import predict, predict_images, predict_loader, prediction_loader

__all__ = ["FitResult", "LoopConfig", "fit", "predict", "predict_images"]

logger = logging.getLogger(__name__)


@dataclass
class FitResult:
    """What a fit leaves: per-epoch history, the best validation epoch and its weights."""

    history: list[dict] = field(default_factory=list)
    best_epoch: int | None = None
    best_state: dict | None = None
    #: Wall time of this fit's first training step; with ``compile`` it is the compile time.
    first_step_s: float | None = None


def fit(
    task: torch.nn.Module,
    train: PatchBatches,
    val: PatchBatches | None,
    cfg: LoopConfig,
    setup: DeviceSetup,
    *,
    checkpoint: Path | None = None,
    desc: str = "train",
    on_epoch_end: Callable[[int], None] | None = None,
    fingerprint: str = "",
) -> FitResult:
    """Train ``task`` for ``cfg.epochs`` epochs; validate after each when ``val`` is given.

    A checkpoint is written atomically after every epoch; if ``checkpoint`` exists and
    was written by the same training (settings, the rows, targets and auxiliary targets
    of ``train`` and ``val``, and ``fingerprint``), training resumes after its last epoch
    with the same random state, so a resumed run ends where an uninterrupted one would;
    any other checkpoint is ignored with a warning.

    The random state is local (:func:`brstnet.seeding.local_seed`): shuffling and
    augmentation draw from generators seeded with ``cfg.seed``; the caller's is unchanged.
    The numbers do not depend on the number of loader workers.

    Kept off the host's critical path: loss components are summed on the device and read
    once per epoch; augmentation runs on whole batches on the device; the training and
    validation loaders (and their workers) are built once for all epochs; on CUDA,
    ``cudnn.benchmark`` is on (fixed patch shapes), the optimizer is fused, and with
    ``setup.compile`` the task is compiled in place (its ``state_dict`` keys unchanged).

    Args:
        fingerprint: What else defines the training and is not in the batches (the
            caller's hash of the model, patch geometry and patches, gene panel, ...).
    """
    with local_seed(cfg.seed), cudnn_autotune(setup):
        return _fit(
            task,
            train,
            val,
            cfg,
            setup,
            checkpoint=checkpoint,
            desc=desc,
            on_epoch_end=on_epoch_end,
            fingerprint=fingerprint,
        )


def _fit(
    task: torch.nn.Module,
    train: PatchBatches,
    val: PatchBatches | None,
    cfg: LoopConfig,
    setup: DeviceSetup,
    *,
    checkpoint: Path | None,
    desc: str,
    on_epoch_end: Callable[[int], None] | None,
    fingerprint: str,
) -> FitResult:
    # Shuffling and augmentation draw from separate streams: loader workers prefetch the
    # sampler's draws ahead of the step, so one shared stream would interleave differently
    # with and without workers.
    sampler_generator = make_generator(cfg.seed)
    augment_generator = make_generator(cfg.seed, stream=1)
    task.to(setup.device)
    if setup.channels_last:
        task.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(task.parameters(), cfg, fused=setup.is_cuda)
    scheduler = make_scheduler(optimizer, cfg)
    # float16 needs loss scaling; bfloat16 and full precision do not
    scaler = torch.amp.GradScaler(setup.device.type, enabled=setup.amp_dtype == torch.float16)
    signature = {
        # 2: separate shuffling and augmentation streams; 3: data and inputs; 4: validation
        # median r and partial r in the history; 5: the depth head's targets, the spots'
        # neighbours and sections (context models); 6: the settings under the parameters'
        # names (lr_reference_batch, resolution_jitter_um, blur_sigma_um)
        "format": 6,
        "config": asdict(cfg),
        "n_train": len(train),
        "n_val": len(val) if val is not None else 0,
        "desc": desc,
        "data": batches_digest(train, val),
        "inputs": fingerprint,
    }
    loop_state = LoopState(task, optimizer, scheduler, scaler, sampler_generator, augment_generator)
    result, start = FitResult(), 0
    state = loop_state.resume(checkpoint, signature, desc=desc, other="with other settings")
    if state is not None:
        result = FitResult(state["history"], state["best_epoch"], state["best_state"])
        start = int(state["epoch"])
    if start >= cfg.epochs:
        return result
    if setup.compile:
        task.compile(dynamic=False)  # in place: state_dict keys and checkpoints unchanged

    loader = make_loader(
        train,
        batch_size=cfg.batch_size,
        shuffle=True,
        generator=sampler_generator,
        num_workers=setup.num_workers,
        pin_memory=setup.pin_memory,
    )
    val_loader = (
        prediction_loader(val, setup, batch_size=max(cfg.batch_size, 64))
        if val is not None and len(val)
        else None
    )
    normalise = InputNormaliser.for_task(task, setup.device, channels_last=setup.channels_last)
    scanner = cfg.scanner
    context = uses_context(task)
    if context:
        require_neighbours(train.neighbours, train.groups, desc)
        bank_loader = prediction_loader(train, setup, batch_size=max(cfg.batch_size, 64))
    for epoch in range(start, cfg.epochs):
        bank = None
        if context:  # the neighbours' embeddings this epoch (no gradients, no augmentation)
            embeddings = predict_images(
                task, (b["images"] for b in bank_loader), setup, features=True
            )
            bank = ContextBank(
                torch.from_numpy(embeddings).to(setup.device), train.neighbours, train.groups
            )
        task.train()
        sums: dict[str, torch.Tensor] = {}  # on the device, read once per epoch
        seen, tic = 0, time.perf_counter()
        for batch in epoch_batches(loader, desc, epoch, cfg.epochs):
            with first_step_timer(result, setup) as first:
                x = normalise.to_unit(batch["images"])
                x = normalise.standardise(scanner(x, augment_generator))
                if cfg.dihedral:
                    x = dihedral(x, augment_generator)
                x = color_jitter(x, cfg.color_jitter, augment_generator)
                targets = batch["targets"].to(setup.device, non_blocking=True)
                aux = batch["aux"].to(setup.device, non_blocking=True) if "aux" in batch else None
                depth = (
                    batch["depth"].to(setup.device, non_blocking=True) if "depth" in batch else None
                )
                spots = bank.context(batch["index"]) if bank is not None else None
                with autocast(setup):
                    out = task(x, targets, aux, depth, spots)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(out["loss"]).backward()
                scaler.step(optimizer)
                scaler.update()
                n = len(targets)
                seen += n
                for key, value in out.items():
                    if key.startswith("loss"):  # float64: the same sums as on the host
                        term = value.detach().double() * n
                        sums[key] = sums[key] + term if key in sums else term
            if first:
                logger.info(
                    "%s: first step %.1f s%s",
                    desc,
                    result.first_step_s,
                    " (torch.compile)" if setup.compile else "",
                )
        scheduler.step()
        losses = {k: float(v) / max(seen, 1) for k, v in sums.items()}  # one sync per epoch
        if not all(np.isfinite(v) for v in losses.values()):
            raise FloatingPointError(
                f"{desc}: the training loss is not finite in epoch {epoch + 1} ({losses}); no "
                "weights were saved for it. Lower model_training.lr, or set amp: false"
            )
        record = {"epoch": epoch + 1, **losses}
        record["images_per_s"] = seen / (time.perf_counter() - tic)
        record["lr"] = optimizer.param_groups[0]["lr"]
        if val_loader is not None:
            _validate(task, val_loader, val, setup, record, result, epoch)
        result.history.append(record)
        logger.info(
            "%s epoch %d/%d: %s",
            desc,
            epoch + 1,
            cfg.epochs,
            ", ".join(f"{k} {v:.4g}" for k, v in record.items() if k != "epoch"),
        )
        if checkpoint is not None:
            loop_state.save(
                checkpoint,
                signature,
                epoch + 1,
                history=result.history,
                best_epoch=result.best_epoch,
                best_state=result.best_state,
            )
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1)
    return result


def _validate(
    task: torch.nn.Module,
    loader,
    val: PatchBatches,
    setup: DeviceSetup,
    record: dict,
    result: FitResult,
    epoch: int,
) -> None:
    """Validation r and loss into ``record``; keep the weights of the best epoch so far.

    ``val_mean_r`` (mean over genes) picks the epoch; ``val_median_r`` and, when ``val``
    has each spot's read depth, ``val_median_partial_r`` (given the log total count) are
    the figures settings are compared by (:mod:`brstnet.evaluation.selection`); with a
    depth head, ``val_depth_r`` is its r with the spots' log read depth.
    """
    pred, depth = predict_loader(task, loader, setup, depth=True)
    r = pearson_per_gene(val.targets, pred)
    record["val_loss"] = float(np.mean((pred - val.targets) ** 2))
    partial, depth_r = None, None
    if val.log_depth is not None:
        partial = partial_pearson_per_gene(val.targets, pred, val.log_depth)
        if np.isfinite(depth).all():  # the depth head's r with the log read depth
            depth_r = float(pearson_per_gene(val.log_depth[:, None], depth[:, None])[0])
    record.update(validation_scores(Validation(r, partial, depth_r)))
    picks = VAL_MEAN_R.name  # the figure the epoch is chosen by
    best = max(
        (h[picks] for h in result.history if np.isfinite(h[picks])),
        default=-np.inf,
    )
    if np.isfinite(record[picks]) and record[picks] > best:
        result.best_epoch = epoch + 1
        result.best_state = {k: v.detach().cpu().clone() for k, v in task.state_dict().items()}
