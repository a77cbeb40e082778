"""The training and prediction path on the device users run it on (CPU or GPU).

Trains a model built from a :class:`~brstnet.models.ModelSpec` with the real ``fit``
(checkpointed, interrupted and resumed), predicts through the real ``predict`` (with and
without TTA) and checks, printing one line each:

- the resumed fit ends with the same weights as an uninterrupted one (within the
  run-to-run difference of two uninterrupted fits: zero on CPU);
- the caller's global random state (CPU and CUDA) is left unchanged by build and fit;
- the store path (``predict``) and the slide path (``predict_images``) agree;
- a bundle saved and loaded predicts the same numbers.

Needs only torch, timm, numpy, pandas, scipy, tqdm, safetensors (no Kedro / MLflow), so
it runs on a bare GPU machine with ``PYTHONPATH=src``:

    python benchmarks/device_check.py --device cuda --size 112 --n 512 --epochs 2
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from brstnet.models import ModelSpec
from brstnet.st.geometry import PatchGeometry
from brstnet.training.bundle import ModelBundle, load_bundle, save_bundle
from brstnet.training.data import PatchBatches
from brstnet.training.devices import resolve_device
from brstnet.training.loop import LoopConfig, fit, predict, predict_images


def _data(n: int, size: int, genes: int, aux: int) -> PatchBatches:
    rng = np.random.default_rng(0)
    patches = rng.integers(0, 255, (n, size, size, 3), dtype=np.uint8)
    brightness = patches.reshape(n, -1).mean(1, keepdims=True) / 255
    targets = (brightness * rng.normal(size=(1, genes)) + 0.1 * rng.normal(size=(n, genes))).astype(
        np.float32
    )
    return PatchBatches(
        patches, np.arange(n), targets, rng.normal(size=(n, aux)).astype(np.float32)
    )


def _max_diff(a: torch.nn.Module, b: torch.nn.Module) -> float:
    sa, sb = a.state_dict(), b.state_dict()
    return max(float((sa[k].float() - sb[k].float()).abs().max()) for k in sa)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--n", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()

    setup = resolve_device(args.device)
    spec = ModelSpec.for_backbone(
        args.backbone, n_main=50, img_size=args.size, n_aux=200, aux_weight=1.0
    )
    data = _data(args.n, args.size, 50, 200)
    cfg = LoopConfig(epochs=args.epochs, batch_size=args.batch_size, optimizer="adamw", lr=1e-3)
    results: dict = {"device": str(setup.device), "amp": str(setup.amp_dtype), **vars(args)}
    results["out"] = None

    torch.manual_seed(1234)
    cpu_state = torch.get_rng_state().clone()
    cuda_state = torch.cuda.get_rng_state().clone() if setup.device.type == "cuda" else None
    with tempfile.TemporaryDirectory() as tmp:
        tic = time.perf_counter()
        whole = spec.build(seed=0)
        fit(whole, data, None, cfg, setup, checkpoint=Path(tmp) / "whole.pt", desc="whole")
        results["fit_s"] = time.perf_counter() - tic
        results["images_per_s"] = args.epochs * args.n / results["fit_s"]

        class Stop(Exception):
            pass

        def stop_after_first(epoch: int) -> None:
            if epoch == 1:
                raise Stop

        ckpt = Path(tmp) / "resumed.pt"
        try:  # an interrupted run: stopped after epoch 1, then resumed
            fit(
                spec.build(seed=0),
                data,
                None,
                cfg,
                setup,
                checkpoint=ckpt,
                desc="resumed",
                on_epoch_end=stop_after_first,
            )
        except Stop:
            pass
        resumed = spec.build(seed=0)
        fit(resumed, data, None, cfg, setup, checkpoint=ckpt, desc="resumed")
        twice = spec.build(seed=0)  # the run-to-run noise floor (non-deterministic kernels)
        fit(twice, data, None, cfg, setup, desc="twice")
        results["resume_max_abs_diff"] = _max_diff(whole, resumed)
        results["repeat_max_abs_diff"] = _max_diff(whole, twice)

        results["global_rng_untouched"] = bool(torch.equal(torch.get_rng_state(), cpu_state)) and (
            cuda_state is None or bool(torch.equal(torch.cuda.get_rng_state(), cuda_state))
        )
        store_path = predict(whole, data, setup, batch_size=64, tta=True)
        slide_path = predict_images(
            whole, (data.patches[i : i + 64] for i in range(0, args.n, 64)), setup, tta=True
        )
        results["store_vs_slide_max_abs_diff"] = float(np.abs(store_path - slide_path).max())
        bundle = ModelBundle(
            {"model": spec.to_dict(), "geometry": PatchGeometry(150.0, args.size).to_dict()},
            {k: v.detach().cpu() for k, v in whole.state_dict().items()},
        )
        save_bundle(bundle, Path(tmp) / "bundle")
        reloaded = load_bundle(Path(tmp) / "bundle").build_task().to(setup.device)
        again = predict(reloaded, data, setup, batch_size=64, tta=True)
        results["bundle_max_abs_diff"] = float(np.abs(store_path - again).max())
    for key, value in results.items():
        print(f"{key:28s} {value}")
    if args.out:
        args.out.write_text(json.dumps(results, indent=1, default=str))
    ok = (
        results["resume_max_abs_diff"] <= results["repeat_max_abs_diff"]
        and results["global_rng_untouched"]
        and results["store_vs_slide_max_abs_diff"] == 0.0
        and results["bundle_max_abs_diff"] == 0.0
    )
    print("device check:", "passed" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
