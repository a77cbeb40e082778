"""Does the real training loop run at the model's speed?

Times, on one device with the same backbone, batch, precision and compile setting:

- the bare model step: forward + backward + optimizer step on a batch already on the
  device (normalised, no augmentation), timed before and after the fit;
- the real ``fit`` (``brstnet.training.loop.fit``) over a memory-mapped patch store on
  disk: loader, workers, host-to-device copies, normalisation, dihedral augmentation,
  loss bookkeeping; its steady epochs (after the first, which starts workers and
  compiles) in images/s;
- the bare forward pass (eval, no grad) and the real ``predict`` over the same store.

and prints images/s and the ratios fit / bare step and predict / bare forward (1.0 = the
loop costs nothing). Needs no Kedro or MLflow: it runs on a bare GPU machine with
``PYTHONPATH=src``. Examples:

    python benchmarks/fit_throughput.py --device cpu --backbone resnet18 --size 112
    python benchmarks/fit_throughput.py --device cuda --backbone resnet50 --size 224 \\
        --batch-size 256 --n 16384 --compile false --out fit_resnet50.json
    python benchmarks/fit_throughput.py --device cuda --backbone efficientnet_b0 \\
        --size 224 --batch-size 32 --aux-genes 5000 --n 8192
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from brstnet.models import ModelSpec
from brstnet.st.patches import PatchStore, load_patch_store, save_patch_store
from brstnet.training.data import InputNormaliser, PatchBatches
from brstnet.training.devices import autocast, cudnn_autotune, resolve_device, synchronize
from brstnet.training.loop import LoopConfig, fit, make_optimizer, predict


def synthetic_store(folder: Path, n: int, size: int) -> PatchStore:
    """A patch store on disk, memory-mapped back, as the training pipeline reads it."""
    rng = np.random.default_rng(0)
    index = pd.DataFrame({"obs_name": [f"s{i}" for i in range(n)], "row": np.arange(n)})
    patches = rng.integers(0, 255, (n, size, size, 3), dtype=np.uint8)
    save_patch_store(PatchStore(patches, index, {"size_px": size}), folder)
    return load_patch_store(folder)


def _timed(fn, repeats: int, setup) -> float:
    synchronize(setup)
    tic = time.perf_counter()
    for _ in range(repeats):
        fn()
    synchronize(setup)
    return time.perf_counter() - tic


def bare_step_rate(task, data: PatchBatches, cfg: LoopConfig, setup, steps: int, warmup: int):
    """Images/s of forward + backward + step on one normalised batch already on the device."""
    optimizer = make_optimizer(task.parameters(), cfg, fused=setup.is_cuda)
    scaler = torch.amp.GradScaler(setup.device.type, enabled=setup.amp_dtype == torch.float16)
    batch = data.__getitems__(list(range(cfg.batch_size)))
    x = InputNormaliser.for_task(task, setup.device, channels_last=setup.channels_last)(
        batch["images"]
    )
    y = batch["targets"].to(setup.device)
    aux = batch["aux"].to(setup.device) if "aux" in batch else None
    task.train()

    def step() -> None:
        with autocast(setup):
            loss = task(x, y, aux)["loss"]
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    _timed(step, warmup, setup)
    return steps * cfg.batch_size / _timed(step, steps, setup)


@torch.no_grad()
def bare_forward_rate(task, data: PatchBatches, batch_size: int, setup, steps: int) -> float:
    """Images/s of the eval forward pass on one normalised batch already on the device."""
    task.eval()
    images = torch.from_numpy(np.array(data.patches[: min(batch_size, len(data))]))
    x = InputNormaliser.for_task(task, setup.device, channels_last=setup.channels_last)(images)

    def forward() -> None:
        with autocast(setup):
            task(x)

    _timed(forward, 3, setup)
    return steps * len(x) / _timed(forward, steps, setup)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--size", type=int, default=112, help="patch size in px")
    parser.add_argument("--n", type=int, default=640, help="patches in the synthetic store")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--epochs", type=int, default=3, help="fit epochs (the first is not counted)"
    )
    parser.add_argument("--steps", type=int, default=20, help="timed bare steps, each time")
    parser.add_argument("--genes", type=int, default=250)
    parser.add_argument("--aux-genes", type=int, default=0, help="> 0: auxiliary head")
    parser.add_argument("--amp", choices=["true", "false"], default="true")
    parser.add_argument("--compile", choices=["auto", "true", "false"], default="auto")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--predict-batch", type=int, default=None, help="default: 2 x batch")
    parser.add_argument("--store", type=Path, help="an existing patch store (default: synthetic)")
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    compile_opt = {"auto": "auto", "true": True, "false": False}[args.compile]
    setup = resolve_device(
        args.device, amp=args.amp == "true", num_workers=args.workers, compile=compile_opt
    )
    cfg = LoopConfig(epochs=args.epochs, batch_size=args.batch_size, dihedral=True)
    predict_batch = args.predict_batch or 2 * args.batch_size
    with tempfile.TemporaryDirectory() as tmp, cudnn_autotune(setup):
        store = args.store and load_patch_store(args.store)
        store = store or synthetic_store(Path(tmp) / "store", args.n, args.size)
        size, n = store.patches.shape[1], len(store)
        rng = np.random.default_rng(1)
        data = PatchBatches(
            store.patches,
            np.arange(n),
            rng.normal(size=(n, args.genes)).astype(np.float32),
            rng.normal(size=(n, args.aux_genes)).astype(np.float32) if args.aux_genes else None,
        )
        spec = ModelSpec.for_backbone(
            args.backbone,
            n_main=args.genes,
            img_size=size,
            n_aux=args.aux_genes,
            aux_weight=1.0 if args.aux_genes else 0.0,
        )

        def new_task():
            task = spec.build(seed=0).to(setup.device)
            if setup.channels_last:
                task.to(memory_format=torch.channels_last)
            if setup.compile:
                task.compile(dynamic=False)
            return task

        bench = new_task()
        warmup = 5
        tic = time.perf_counter()
        step_before = bare_step_rate(bench, data, cfg, setup, args.steps, warmup)
        bare_first_s = time.perf_counter() - tic

        tic = time.perf_counter()
        result = fit(spec.build(seed=0), data, None, cfg, setup, desc="benchmark")
        fit_wall = time.perf_counter() - tic
        steady = [h["images_per_s"] for h in result.history[1:]] or [
            result.history[0]["images_per_s"]
        ]
        fit_rate = statistics.median(steady)

        step_after = bare_step_rate(bench, data, cfg, setup, args.steps, 1)
        step_rate = (step_before + step_after) / 2

        forward_rate = bare_forward_rate(bench, data, predict_batch, setup, args.steps)
        predict(bench, data, setup, batch_size=predict_batch)  # warm: workers, compile
        tic = time.perf_counter()
        predict(bench, data, setup, batch_size=predict_batch)
        predict_rate = n / (time.perf_counter() - tic)

    device = (
        torch.cuda.get_device_name(setup.device)
        if setup.is_cuda
        else f"cpu ({torch.get_num_threads()} threads)"
    )
    figures = {
        "date": time.strftime("%Y-%m-%d"),
        "device": device,
        "torch": torch.__version__,
        "backbone": args.backbone,
        "size_px": size,
        "batch_size": args.batch_size,
        "aux_genes": args.aux_genes,
        "amp": str(setup.amp_dtype),
        "compile": setup.compile,
        "workers": setup.num_workers,
        "n_patches": n,
        "bare_step_images_per_s_before": step_before,
        "bare_step_images_per_s_after": step_after,
        "fit_epoch_images_per_s": fit_rate,
        "fit_epochs_images_per_s": [h["images_per_s"] for h in result.history],
        "fit_wall_s": fit_wall,
        "fit_first_step_s": result.first_step_s,
        "bare_first_steps_s": bare_first_s,
        "fit_over_bare_step": fit_rate / step_rate,
        "bare_forward_images_per_s": forward_rate,
        "predict_images_per_s": predict_rate,
        "predict_over_bare_forward": predict_rate / forward_rate,
    }
    print(
        f"\n{args.backbone}, {size} px, batch {args.batch_size}, aux genes {args.aux_genes}, "
        f"device {device}, amp {setup.amp_dtype}, compile {setup.compile}, "
        f"workers {setup.num_workers}, {n} patches"
    )
    print(f"bare model step (before / after fit) : {step_before:9.1f} / {step_after:.1f} images/s")
    print(f"real fit, steady epochs (median)     : {fit_rate:9.1f} images/s")
    print(f"ratio fit / bare step                : {fit_rate / step_rate:9.3f}")
    print(f"fit first step (compile when on)     : {result.first_step_s:9.2f} s")
    print(f"bare forward (batch {predict_batch:4d})            : {forward_rate:9.1f} images/s")
    print(f"real predict over the store          : {predict_rate:9.1f} images/s")
    print(f"ratio predict / bare forward         : {predict_rate / forward_rate:9.3f}")
    if args.out:
        args.out.write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
