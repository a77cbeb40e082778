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
from tqdm.auto import tqdm

from ..atomic import atomic_file
from ..metrics import pearson_per_gene
from ..seeding import local_seed
from .data import InputNormaliser, PatchBatches, color_jitter, dihedral, make_loader
from .devices import DeviceSetup, make_generator
from .predict import predict, predict_images

__all__ = ["FitResult", "LoopConfig", "fit", "predict", "predict_images"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoopConfig:
    """Optimisation settings (BrST-Net's defaults)."""

    epochs: int
    batch_size: int = 32
    optimizer: str = "sgd"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 1e-6
    scheduler: str = "cosine"
    dihedral: bool = True
    color_jitter: float = 0.0
    seed: int = 0


@dataclass
class FitResult:
    """What a fit leaves: per-epoch history, the best validation epoch and its weights."""

    history: list[dict] = field(default_factory=list)
    best_epoch: int | None = None
    best_state: dict | None = None


def make_optimizer(params, cfg: LoopConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}; use sgd or adamw")


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: LoopConfig):
    if cfg.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(cfg.epochs, 1))
    if cfg.scheduler == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    raise ValueError(f"unknown scheduler {cfg.scheduler!r}; use cosine or constant")


def _save_atomic(state: dict, path: Path) -> None:
    with atomic_file(path) as tmp:
        torch.save(state, tmp)


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
) -> FitResult:
    """Train ``task`` for ``cfg.epochs`` epochs; validate after each when ``val`` is given.

    A checkpoint is written atomically after every epoch; if ``checkpoint`` exists and
    was written by the same settings, training resumes after its last epoch with the
    same random state, so a resumed run ends where an uninterrupted one would.

    The random state is local (:func:`brstnet.seeding.local_seed`): shuffling and
    augmentation draw from a generator seeded with ``cfg.seed``; the caller's is unchanged.
    """
    with local_seed(cfg.seed):
        return _fit(
            task,
            train,
            val,
            cfg,
            setup,
            checkpoint=checkpoint,
            desc=desc,
            on_epoch_end=on_epoch_end,
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
) -> FitResult:
    generator = make_generator(cfg.seed)
    task.to(setup.device)
    if setup.channels_last:
        task.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(task.parameters(), cfg)
    scheduler = make_scheduler(optimizer, cfg)
    scaler = torch.amp.GradScaler("cuda", enabled=setup.amp_dtype == torch.float16)
    signature = {
        "config": asdict(cfg),
        "n_train": len(train),
        "n_val": len(val) if val is not None else 0,
        "desc": desc,
    }
    result = FitResult()
    start = 0
    if checkpoint is not None and checkpoint.is_file():
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        if state.get("signature") == signature:
            task.load_state_dict(state["task"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            scaler.load_state_dict(state["scaler"])
            generator.set_state(state["generator"])
            torch.set_rng_state(state["torch_rng"])
            result = FitResult(state["history"], state["best_epoch"], state["best_state"])
            start = int(state["epoch"])
            logger.info("%s: resuming from %s after epoch %d", desc, checkpoint, start)
        else:
            logger.warning(
                "%s: checkpoint %s was written with other settings; starting afresh",
                desc,
                checkpoint,
            )

    loader = make_loader(
        train,
        batch_size=cfg.batch_size,
        shuffle=True,
        generator=generator,
        num_workers=setup.num_workers,
        pin_memory=setup.pin_memory,
    )
    normalise = InputNormaliser.for_task(task, setup.device, channels_last=setup.channels_last)
    for epoch in range(start, cfg.epochs):
        task.train()
        sums: dict[str, torch.Tensor] = {}  # on the device, read once per epoch
        seen, tic = 0, time.perf_counter()
        for batch in tqdm(
            loader, desc=f"{desc} epoch {epoch + 1}/{cfg.epochs}", unit="batch", leave=False
        ):
            x = normalise(batch["images"])
            if cfg.dihedral:
                x = dihedral(x, generator)
            x = color_jitter(x, cfg.color_jitter, generator)
            targets = batch["targets"].to(setup.device, non_blocking=True)
            aux = batch["aux"].to(setup.device, non_blocking=True) if "aux" in batch else None
            with torch.autocast(
                setup.device.type, dtype=setup.amp_dtype, enabled=setup.amp_dtype is not None
            ):
                out = task(x, targets, aux)
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
        if val is not None and len(val):
            pred = predict(task, val, setup, batch_size=max(cfg.batch_size, 64))
            r = pearson_per_gene(val.targets, pred)
            record["val_loss"] = float(np.mean((pred - val.targets) ** 2))
            record["val_mean_r"] = float(np.nanmean(r)) if np.isfinite(r).any() else float("nan")
            best = max(
                (h["val_mean_r"] for h in result.history if np.isfinite(h["val_mean_r"])),
                default=-np.inf,
            )
            if np.isfinite(record["val_mean_r"]) and record["val_mean_r"] > best:
                result.best_epoch = epoch + 1
                result.best_state = {
                    k: v.detach().cpu().clone() for k, v in task.state_dict().items()
                }
        result.history.append(record)
        logger.info(
            "%s epoch %d/%d: %s",
            desc,
            epoch + 1,
            cfg.epochs,
            ", ".join(f"{k} {v:.4g}" for k, v in record.items() if k != "epoch"),
        )
        if checkpoint is not None:
            _save_atomic(
                {
                    "signature": signature,
                    "epoch": epoch + 1,
                    "task": task.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict(),
                    "generator": generator.get_state(),
                    "torch_rng": torch.get_rng_state(),
                    "history": result.history,
                    "best_epoch": result.best_epoch,
                    "best_state": result.best_state,
                },
                checkpoint,
            )
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1)
    return result
