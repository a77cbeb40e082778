"""``brstnet predict``: expression maps for one slide, without a Kedro project around it.

(Not ``brstnet/cli.py``: Kedro reserves that name for project CLI commands.)
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .atomic import atomic_file
from .mlflow_views import experiment_url
from .st.errors import DataError


def predict_command(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="brstnet predict", description="Predict spatial gene expression over an H&E slide."
    )
    parser.add_argument(
        "slide", type=Path, help="H&E image: JPEG / PNG, or (pyramidal) TIFF read by regions"
    )
    parser.add_argument(
        "--model",
        required=True,
        help="a model folder (data/06_models/<variant>_fold<k>), runs:/<run id>/model/fold<k>, "
        "or a logged / registered MLflow model: models:/<model id>, models:/<name>/<version>",
    )
    parser.add_argument(
        "--out", required=True, type=Path, help="output folder: <slide>.h5ad and <slide>_maps.png"
    )
    parser.add_argument(
        "--pixel-size",
        type=float,
        default=None,
        help="micrometres per pixel (default: from the TIFF tags)",
    )
    parser.add_argument(
        "--pitch-um",
        type=float,
        default=200.0,
        help="grid step in micrometres (default: the ST spot pitch)",
    )
    parser.add_argument(
        "--genes",
        nargs="*",
        default=None,
        help="genes to draw (default: ERBB2 if predicted, then the first of the panel)",
    )
    parser.add_argument("--tta", action="store_true", help="mean over the 8 flips / rotations")
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow tracking store for runs:/ and models:/ URIs (default: MLFLOW_TRACKING_URI)",
    )
    args = parser.parse_args(argv)
    fixes = {
        "--pitch-um": (args.pitch_um, "the grid step, e.g. --pitch-um 200 (the ST spot pitch)"),
        "--pixel-size": (args.pixel_size, "the slide's micrometres per pixel, e.g. 0.5"),
    }
    for flag, (value, fix) in fixes.items():
        if value is not None and not value > 0:
            parser.exit(
                2,
                f"brstnet predict: error: {flag} must be a positive number of micrometres, "
                f"got {value:g}: give {fix}\n",
            )
    for parent in (args.out, *args.out.parents):
        if parent.exists() and not parent.is_dir():
            what = "is a file" if parent == args.out else f"is under the file {parent}"
            parser.exit(2, f"brstnet predict: error: --out {args.out} {what}; give a folder\n")
    # deferred here and below: torch loads only once the arguments are checked, so
    # --help and usage errors answer at once
    from .training.devices import resolve_device

    try:
        resolve_device(args.device)
    except (RuntimeError, ValueError) as err:  # an unknown name, or CUDA without a GPU
        parser.exit(2, f"brstnet predict: error: --device {args.device}: {err}\n")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    from .inference.models import load_model  # deferred with resolve_device: torch
    from .inference.slide import check_genes, default_genes, predict_slide, slide_maps_figure

    try:
        bundle = load_model(args.model, tracking_uri=args.tracking_uri)
        genes = (
            check_genes(bundle, args.genes) if args.genes else default_genes(bundle.config["genes"])
        )
        result = predict_slide(
            bundle,
            args.slide,
            pixel_size_um=args.pixel_size,
            pitch_um=args.pitch_um,
            device=args.device,
            tta=args.tta,
        )
    except DataError as err:
        parser.exit(2, f"brstnet predict: error: {err}\n")
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.slide.stem
    with atomic_file(args.out / f"{stem}.h5ad") as tmp:
        result.write_h5ad(tmp)
    with atomic_file(args.out / f"{stem}_maps.png") as tmp:
        slide_maps_figure(result, genes).save(tmp, format="PNG")
    logging.getLogger("brstnet").info(
        "wrote %s and %s", args.out / f"{stem}.h5ad", args.out / f"{stem}_maps.png"
    )
    return 0


def mlflow_link_command(argv: list[str] | None = None) -> int:
    """``brstnet mlflow-link``: print the MLflow UI link to the runs table that compares
    the variants (model-training view, comparison columns; see brstnet.mlflow_views)."""
    parser = argparse.ArgumentParser(
        prog="brstnet mlflow-link",
        description="Print the MLflow UI link to the runs table that compares the variants.",
    )
    parser.add_argument(
        "--tracking-uri",
        default="sqlite:///mlflow.db",
        help="the project's tracking store (default: sqlite:///mlflow.db, conf/base/mlflow.yml)",
    )
    parser.add_argument(
        "--url", default="http://127.0.0.1:5000", help="where the MLflow UI runs (make mlflow-ui)"
    )
    parser.add_argument("--experiment", default="brstnet")
    args = parser.parse_args(argv)
    if args.tracking_uri.startswith("sqlite:///") and not Path(args.tracking_uri[10:]).exists():
        link = None
    else:
        link = experiment_url(args.tracking_uri, args.url, args.experiment)
    if link is None:
        parser.exit(
            1,
            f"no experiment {args.experiment!r} in {args.tracking_uri} yet: run the pipelines "
            "first (make run)\n",
        )
    sys.stdout.write(link + "\n")
    return 0
