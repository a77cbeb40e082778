"""Is reading patches the bottleneck of training?

Prints training images/s through the real loader (memory-mapped patch store ->
DataLoader -> device -> augmentation -> forward/backward/step) and for the same model
step on a batch already on the device, and their ratio (1.0 = the loader costs nothing).

    python benchmarks/loader_throughput.py --backbone resnet18 --device auto
    python benchmarks/loader_throughput.py --store data/04_feature/patch_store --batches 30

Without --store it builds a synthetic store of --size px patches in a temp folder.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from brstnet.models import ModelSpec
from brstnet.st.patches import PatchStore, load_patch_store, save_patch_store
from brstnet.training.data import InputNormaliser, PatchBatches, dihedral, make_loader
from brstnet.training.devices import resolve_device
from brstnet.training.loop import LoopConfig, make_optimizer


def synthetic_store(folder: Path, n: int, size: int) -> PatchStore:
    rng = np.random.default_rng(0)
    index = pd.DataFrame({"obs_name": [f"s{i}" for i in range(n)], "row": np.arange(n)})
    save_patch_store(
        PatchStore(
            rng.integers(0, 255, (n, size, size, 3), dtype=np.uint8), index, {"size_px": size}
        ),
        folder,
    )
    return load_patch_store(folder)


def step_fn(task, optimizer, setup):
    def step(x, y):
        with torch.autocast(
            setup.device.type, dtype=setup.amp_dtype, enabled=setup.amp_dtype is not None
        ):
            loss = task(x, y)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def sync(setup) -> None:
    if setup.device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--store", type=Path, help="an existing patch store (default: synthetic)")
    parser.add_argument("--size", type=int, default=112, help="patch size of the synthetic store")
    parser.add_argument("--n", type=int, default=2048, help="patches in the synthetic store")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--genes", type=int, default=250)
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    setup = resolve_device(args.device, num_workers=args.workers)
    with tempfile.TemporaryDirectory() as tmp:
        store = (
            load_patch_store(args.store)
            if args.store
            else synthetic_store(Path(tmp) / "store", args.n, args.size)
        )
        size = store.patches.shape[1]
        n = len(store)
        targets = np.random.default_rng(1).normal(size=(n, args.genes)).astype(np.float32)
        data = PatchBatches(store.patches, np.arange(n), targets)
        task = ModelSpec.for_backbone(args.backbone, n_main=args.genes, img_size=size).build(seed=0)
        task.to(setup.device)
        normalise = InputNormaliser.for_task(task, setup.device, channels_last=setup.channels_last)
        if setup.channels_last:
            task.to(memory_format=torch.channels_last)
        task.train()
        optimizer = make_optimizer(task.parameters(), LoopConfig(epochs=1))
        step = step_fn(task, optimizer, setup)
        gen = torch.Generator().manual_seed(0)

        # model step alone, on one batch already on the device
        batch = data.__getitems__(list(range(args.batch_size)))
        x = normalise(batch["images"])
        y = batch["targets"].to(setup.device)
        for _ in range(3):
            step(x, y)
        sync(setup)
        tic = time.perf_counter()
        for _ in range(args.batches):
            step(dihedral(x, gen), y)
        sync(setup)
        in_memory = args.batches * args.batch_size / (time.perf_counter() - tic)

        # the real loader: memory map -> workers -> pinned host batch -> device
        loader = make_loader(
            data,
            batch_size=args.batch_size,
            shuffle=True,
            generator=gen,
            num_workers=setup.num_workers,
            pin_memory=setup.pin_memory,
        )
        done, tic, it = 0, None, iter(loader)
        for i in range(args.batches + 3):
            try:
                batch = next(it)
            except StopIteration:
                it = iter(loader)
                batch = next(it)
            if i == 3:
                sync(setup)
                tic = time.perf_counter()
            xb = dihedral(normalise(batch["images"]), gen)
            step(xb, batch["targets"].to(setup.device, non_blocking=True))
            done += len(batch["images"]) if i >= 3 else 0
        sync(setup)
        loader_rate = done / (time.perf_counter() - tic)

    device = (
        torch.cuda.get_device_name(0)
        if setup.device.type == "cuda"
        else f"cpu ({torch.get_num_threads()} threads)"
    )
    print(
        f"backbone {args.backbone}, {size} px, batch {args.batch_size}, device {device}, workers {setup.num_workers}, amp {setup.amp_dtype}"
    )
    print(f"model step on in-memory batch : {in_memory:8.1f} images/s")
    print(f"through the real loader       : {loader_rate:8.1f} images/s")
    print(f"ratio loader / in-memory      : {loader_rate / in_memory:8.3f}")


if __name__ == "__main__":
    main()
