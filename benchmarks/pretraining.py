"""Self-supervised pretraining, measured: tissue windows, images/s, and the probe on the
inner validation split.

Reads what ``kedro run --pipelines=data_processing,feature_selection`` (and, for
``--part probe``, ``--pipelines=pretraining``) wrote under data/:

    PYTHONPATH=src python benchmarks/pretraining.py --part windows
    PYTHONPATH=src python benchmarks/pretraining.py --part speed --windows 256 --epochs 2
    PYTHONPATH=src python benchmarks/pretraining.py --part probe

- ``windows``: tissue windows per section at each stride (the patch store's geometry and
  tissue threshold), against the spots after QC;
- ``speed``: SimCLR images/s (two views per window) over the window store, the view
  augmentation alone and the model step alone, on one device;
- ``probe``: PCA + ridge (HEST-Bench) on each fold's inner split, from the fold's
  pretrained trunk and from a random trunk of the same backbone (seed 0): the inner
  validation median r. Held-out patients are never scored here.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _params(name: str) -> dict:
    return yaml.safe_load((ROOT / f"conf/base/parameters_{name}.yml").read_text())[name]


def part_windows(strides: list[float]) -> None:
    import json

    from brstnet.config import DataProcessingParams
    from brstnet.datasets import AnnDataDataset
    from brstnet.pretraining.windows import tissue_windows
    from brstnet.st.images import ImageBuffer
    from brstnet.st.slides import open_slide

    dp = DataProcessingParams.model_validate(_params("data_processing"))
    stain = json.loads((ROOT / "data/04_feature/stain_reference.json").read_text())
    geometry = dp.geometry(stain)
    buffer, rows = ImageBuffer(), []
    for path in sorted((ROOT / "data/03_primary/sections").glob("*.h5ad")):
        adata = AnnDataDataset(str(path)).load_spots()
        slide = open_slide(adata.uns["image_path"], path.stem, buffer=buffer)
        row = {"section": path.stem, "spots": adata.n_obs}
        for stride in strides:
            centres, _ = tissue_windows(
                slide, float(adata.uns["pixel_size_um"]), geometry, stride_um=stride
            )
            row[f"windows_stride_{stride:g}um"] = len(centres)
        rows.append(row)
        del slide
    table = pd.DataFrame(rows)
    table.loc[len(table)] = {"section": "all", **table.drop(columns="section").sum().to_dict()}
    print(
        f"window {geometry.window_um:g} um -> {geometry.size_px} px, tissue if background "
        f"<= {geometry.max_background_fraction:g}"
    )
    print(table.to_string(index=False))


def part_speed(args) -> None:
    import torch

    from brstnet.models.backbones import backbone_spec
    from brstnet.pretraining.simclr import SimCLR, nt_xent, two_views
    from brstnet.pretraining.train import PretrainConfig, pretrain
    from brstnet.st.patch_store import load_patch_store
    from brstnet.training.augment import ScannerAugmentation
    from brstnet.training.data import InputNormaliser
    from brstnet.training.devices import make_generator, resolve_device

    store = load_patch_store(ROOT / "data/04_feature/pretraining_windows")
    setup = resolve_device(args.device)
    geometry = store.geometry
    rows = np.arange(min(args.windows, len(store)))
    pt = _params("pretraining")
    cfg = PretrainConfig(
        backbone=args.backbone,
        img_size=geometry.size_px,
        epochs=args.epochs,
        batch_size=args.batch,
        temperature=pt["temperature"],
        crop_scale=pt["crop_scale"],
        stain_jitter=pt["stain_jitter"],
        um_per_px=geometry.window_um / geometry.size_px,
    )
    result = pretrain(store.patches, rows, cfg, setup, desc="speed")
    fit = result.history[-1]["images_per_s"]
    # the parts: views alone, then the model step on views made beforehand
    spec = backbone_spec(args.backbone)
    norm = InputNormaliser(spec.mean, spec.std, setup.device)
    batch = torch.from_numpy(np.ascontiguousarray(store.patches[rows[: args.batch]]))
    generator = make_generator(0)
    scanner = ScannerAugmentation(cfg.stain_jitter, None, 0.0, cfg.um_per_px)
    tic = time.perf_counter()
    for _ in range(3):
        v1, v2 = two_views(batch, norm, generator, crop_scale=cfg.crop_scale, scanner=scanner)
    views_s = (time.perf_counter() - tic) / 3
    model = SimCLR(args.backbone, img_size=geometry.size_px).to(setup.device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.cat([v1, v2])
    for i in range(4):  # the first is a warm-up
        if i == 1:
            tic = time.perf_counter()
        z = model(x)
        loss = nt_xent(z[: len(v1)], z[len(v1) :], cfg.temperature)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    step_s = (time.perf_counter() - tic) / 3
    images = 2 * len(batch)
    print(
        f"{args.backbone} at {geometry.size_px} px, batch {len(batch)} windows ({images} images), "
        f"{setup.device}, {torch.get_num_threads()} threads"
    )
    print(f"  pretrain (last of {args.epochs} epochs, {len(rows)} windows): {fit:.1f} images/s")
    print(f"  views alone: {images / views_s:.1f} images/s ({views_s:.2f} s a batch)")
    print(f"  model step alone: {images / step_s:.1f} images/s ({step_s:.2f} s a batch)")


def part_probe(args) -> None:
    import anndata as ad

    from brstnet.features.splits import OUTER
    from brstnet.pretraining.probe import inner_probe_scores, pretrained_task
    from brstnet.pretraining.weights import load_trunk
    from brstnet.st.patch_store import load_patch_store
    from brstnet.training.devices import resolve_device
    from brstnet.training.probe import extract_features

    store = load_patch_store(ROOT / "data/04_feature/patch_store")
    splits = pd.read_csv(ROOT / "data/05_model_input/splits.csv")
    setup = resolve_device(args.device)
    rows = []
    for fold in sorted(splits["fold"].unique()):
        if not (splits[(splits["fold"] == fold) & (splits["inner_fold"] != OUTER)]).size:
            print(f"fold {fold}: no inner split (one training section); skipped")
            continue
        fold_input = ad.read_h5ad(ROOT / f"data/05_model_input/folds/fold_{fold}.h5ad")
        tag = args.tag or args.backbone
        path = ROOT / f"data/06_models/pretrained/{tag}_fold{fold}.safetensors"
        for name, trunk in (("random init", None), (f"SSL ({path.name})", load_trunk(path))):
            task = pretrained_task(args.backbone, fold_input.n_vars, store.geometry.size_px, trunk)
            tic = time.perf_counter()
            features = extract_features(task, store.patches, setup, batch_size=64)
            seconds = time.perf_counter() - tic
            for ridge in ("hest", "loo"):
                scores = inner_probe_scores(
                    fold_input, features, splits, fold, pca_dims=args.pca, ridge=ridge
                )
                rows.append({"fold": fold, "encoder": name, "ridge": ridge, **scores})
            rows[-2]["features_s"] = rows[-1]["features_s"] = seconds
    print(
        f"standardise, PCA {args.pca}, ridge (hest: HEST-Bench's fixed penalty; loo: by "
        "leave-one-out); fitted on the inner-train sections, scored on the inner-validation "
        "sections only:"
    )
    print(pd.DataFrame(rows).round(4).to_string(index=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=["windows", "speed", "probe"], required=True)
    parser.add_argument("--strides", type=float, nargs="+", default=[150.0, 75.0])
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--tag", default=None, help="pretrained trunk tag (default: backbone)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--windows", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--pca", type=int, default=256)
    args = parser.parse_args()
    if args.part == "windows":
        part_windows(args.strides)
    elif args.part == "speed":
        part_speed(args)
    else:
        part_probe(args)


if __name__ == "__main__":
    main()
