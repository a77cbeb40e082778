"""Several trainings on one GPU, placed by the Dask runner's own cluster code.

For k in ``--trainings`` (default 1 2 4): starts the cluster the Dask runner starts for
``cluster: local_cuda`` with ``gpu_per_training: 1/k`` and one GPU
(:func:`brstnet.runners.clusters.open_cluster`: k worker processes pinned to the GPU,
each offering ``GPU=1/k``), submits k real ``fit`` trainings asking for that share (as
training nodes do), and prints each training's steady images/s, their sum and the ratio
to one training alone. The patches are one synthetic memory-mapped store on disk (as in
``benchmarks/fit_throughput.py``).

Kedro and MLflow are not needed (the GPU machine lacks them): the cluster, the resource
requests and the training loop are the runner's; the Kedro session around them is not.
With ``--device cpu`` it runs on a ``local`` cluster of CPU workers (a smoke test of the
script, not a figure).

    python benchmarks/gpu_sharing.py --backbone efficientnet_b0 --aux-genes 5000 \\
        --size 224 --batch-size 32 --n 4096 --out sharing.json
    python benchmarks/gpu_sharing.py --device cpu --backbone resnet18 --size 32 --n 64 \\
        --trainings 1 2 --epochs 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def train_once(store_path: str, args: dict) -> dict:
    """One real ``fit`` on the store (runs on a Dask worker); its steady images/s."""
    import numpy as np
    import torch

    from brstnet.models import ModelSpec
    from brstnet.st.patch_store import load_patch_store
    from brstnet.training.data import PatchBatches
    from brstnet.training.devices import resolve_device
    from brstnet.training.loop import LoopConfig, fit

    store = load_patch_store(store_path)
    n = len(store)
    rng = np.random.default_rng(1)
    aux = args["aux_genes"]
    data = PatchBatches(
        store.patches,
        np.arange(n),
        rng.normal(size=(n, args["genes"])).astype(np.float32),
        rng.normal(size=(n, aux)).astype(np.float32) if aux else None,
    )
    spec = ModelSpec.for_backbone(
        args["backbone"],
        n_main=args["genes"],
        img_size=store.patches.shape[1],
        n_aux=aux,
        aux_weight=1.0 if aux else 0.0,
    )
    setup = resolve_device(args["device"], amp=True, compile=args["compile"])
    cfg = LoopConfig(epochs=args["epochs"], batch_size=args["batch_size"], dihedral=True)
    tic = time.perf_counter()
    result = fit(spec.build(seed=0), data, None, cfg, setup, desc="sharing")
    rates = [h["images_per_s"] for h in result.history]
    return {
        "images_per_s": statistics.median(rates[1:] or rates),
        "wall_s": time.perf_counter() - tic,
        "device": str(setup.device),
        "torch_threads": torch.get_num_threads(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--trainings", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--backbone", default="efficientnet_b0")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--n", type=int, default=4096, help="patches in the synthetic store")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--genes", type=int, default=250)
    parser.add_argument("--aux-genes", type=int, default=5000)
    parser.add_argument("--compile", choices=["true", "false"], default="false")
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args()

    import sys

    sys.path.insert(0, str(REPO / "benchmarks"))
    from fit_throughput import synthetic_store

    from brstnet.runners.clusters import open_cluster, training_resources
    from brstnet.runners.config import load_settings

    task = {
        "device": args.device,
        "backbone": args.backbone,
        "genes": args.genes,
        "aux_genes": args.aux_genes,
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "compile": args.compile == "true",
    }
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "store"
        synthetic_store(store, args.n, args.size)
        for k in args.trainings:
            settings = load_settings(
                {
                    "cluster": "local_cuda" if args.device == "cuda" else "local",
                    "gpu_per_training": 1.0 / k,
                    "dashboard_address": "127.0.0.1:0",
                    "local_cuda": {"n_gpus": 1},
                    "local": {"n_workers": k},
                }
            )
            with open_cluster(settings, project_path=REPO, where="gpu_sharing.py") as cluster:
                tic = time.perf_counter()
                futures = [
                    cluster.client.submit(
                        train_once,
                        str(store),
                        task,
                        key=f"fit-{k}-{i}",
                        resources=training_resources(settings) or None,
                        pure=False,
                    )
                    for i in range(k)
                ]
                results = cluster.client.gather(futures)
                wall = time.perf_counter() - tic
            rates = [r["images_per_s"] for r in results]
            rows.append(
                {
                    "trainings": k,
                    "per_training_images_per_s": rates,
                    "aggregate_images_per_s": sum(rates),
                    "wall_s": wall,
                    "cluster": cluster.description,
                }
            )
    one = rows[0]["aggregate_images_per_s"] / rows[0]["trainings"]
    print(
        f"\n{args.backbone}, {args.size} px, batch {args.batch_size}, aux genes "
        f"{args.aux_genes}, {args.device}, compile {args.compile}"
    )
    print("trainings | per training (img/s)        | aggregate | vs one alone")
    for row in rows:
        row["vs_one"] = row["aggregate_images_per_s"] / one
        each = ", ".join(f"{r:.0f}" for r in row["per_training_images_per_s"])
        print(
            f"{row['trainings']:9d} | {each:27s} | {row['aggregate_images_per_s']:9.0f} | "
            f"{row['vs_one']:.2f}x"
        )
    if args.out:
        args.out.write_text(
            json.dumps({"settings": vars(args) | {"out": str(args.out)}, "rows": rows}, indent=1)
        )
    return 0


if __name__ == "__main__":  # Dask's worker processes re-import this module
    raise SystemExit(main())
