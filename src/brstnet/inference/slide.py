"""Predict expression over a whole H&E slide with a trained model bundle.

Everything training fixed travels in the bundle (gene panel, target statistics, stain
reference, patch size in micrometres, model resolution), so a slide is cut and
normalised exactly as the training patches were, at the slide's own pixel size.
"""

from __future__ import annotations

import logging
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import tifffile
from tqdm.auto import tqdm

from ..features.targets import convert_scale, predicted_log_depth
from ..st.cutting import check_window, cut_patches
from ..st.errors import DataError
from ..st.neighbours import spot_neighbours
from ..st.slides import TIFF_SUFFIXES, Slide, open_slide
from ..st.stain import StainNormalizer
from ..st.tissue import background_fractions, tissue_mask
from ..training.bundle import ModelBundle
from ..training.context import predict_from_embeddings
from ..training.devices import resolve_device
from ..training.loop import predict_images

logger = logging.getLogger(__name__)


def slide_pixel_size(path: str | Path, given: float | None) -> float:
    """The slide's micrometres per pixel: ``given``, else the TIFF resolution tags.

    Raises:
        DataError: none given and none recorded in the file (names the file).
    """
    if given is not None:
        if given <= 0:
            raise DataError(f"slide {path}: pixel size must be positive, got {given}")
        return float(given)
    path = Path(path)
    if path.suffix.lower() in TIFF_SUFFIXES:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            res, unit = page.tags.get("XResolution"), page.tags.get("ResolutionUnit")
            if res is not None and unit is not None and int(unit.value) in (2, 3):
                num, den = res.value
                if num > 0 and den > 0:
                    per_um = (num / den) / (25400.0 if int(unit.value) == 2 else 10000.0)
                    if per_um > 0.1:  # a real scan (>= 0.1 px per um); 72 dpi placeholders are not
                        return 1.0 / per_um
    raise DataError(
        f"slide {path}: its pixel size is not recorded in the file; give it (--pixel-size / "
        "inference.pixel_size_um, micrometres per pixel)"
    )


def tissue_grid(
    slide: Slide, *, pitch_px: float, window_px: int, max_background_fraction: float
) -> np.ndarray:
    """Grid points (x, y) at ``pitch_px`` whose window is mostly tissue.

    Raises:
        DataError: no tissue found.
    """
    thumb, scale = slide.thumbnail()
    mask = tissue_mask(thumb)
    xs = np.arange(window_px / 2, slide.width - window_px / 2 + 1, pitch_px)
    ys = np.arange(window_px / 2, slide.height - window_px / 2 + 1, pitch_px)
    grid = np.array([(x, y) for y in ys for x in xs], dtype=float).reshape(-1, 2)
    if len(grid) == 0 or not mask.any():
        raise DataError(
            "no tissue found on the slide (blank, or the window is larger than the slide)"
        )
    keep = (
        background_fractions(mask, grid, window=window_px, scale=scale) <= max_background_fraction
    )
    if not keep.any():
        raise DataError("no tissue found on the slide: no window is covered by tissue")
    return grid[keep]


def predict_slide(
    bundle: ModelBundle,
    slide_path: str | Path,
    *,
    pixel_size_um: float | None = None,
    pitch_um: float = 200.0,
    positions: np.ndarray | None = None,
    batch_size: int = 64,
    device: str = "auto",
    tta: bool = False,
) -> ad.AnnData:
    """Predict the model's gene panel over a slide.

    The windows are cut, resized and stain-normalised by the same function as the
    training patches (:func:`brstnet.st.cutting.cut_patches`), with the bundle's patch
    geometry (window in micrometres, background threshold, stain reference) at this
    slide's pixel size, and normalised with the model spec's input statistics.

    Args:
        bundle: A trained model (``data/06_models/<variant>_fold<k>``).
        slide_path: H&E image (JPEG/PNG decoded once; TIFF read by regions).
        pixel_size_um: Micrometres per pixel of this slide (None: from the TIFF tags).
        pitch_um: Grid step (default: the ST spot pitch, 200 um; smaller for smoother maps).
        positions: [n, 2] pixel centres to predict instead of the tissue grid.

    Returns:
        AnnData: X = predictions in the training target scale (z-scores); a layer named
        after the target transform with the z-score undone (``library``: log(1 + reads per
        10,000), ``log1p``: log(1 + count)); with a depth head, obs ``predicted_log_depth``
        (the spot's log read depth) and the ``log1p`` and ``library`` layers both (counts
        on the training scale = depth x composition); obsm["spatial"], var = genes, uns =
        model, pixel size and geometry.
    """
    if positions is None and not pitch_um > 0:
        raise DataError(
            f"slide {slide_path}: pitch_um must be > 0 micrometres, got {pitch_um:g}; set the "
            "grid step (--pitch-um / inference.pitch_um), e.g. 200, the ST spot pitch"
        )
    cfg, geometry, spec = bundle.config, bundle.geometry, bundle.spec
    pixel = slide_pixel_size(slide_path, pixel_size_um)
    slide = open_slide(slide_path, Path(slide_path).name)
    window = check_window(
        geometry,
        pixel,
        slide,
        f"slide {slide_path}",
        fix="the model's window is fixed by training: check the pixel size given for the slide",
    )
    if positions is None:
        centres = tissue_grid(
            slide,
            pitch_px=pitch_um / pixel,
            window_px=window,
            max_background_fraction=geometry.max_background_fraction,
        )
    else:
        centres = np.asarray(positions, dtype=float)
    normalizer = StainNormalizer(geometry.stain_reference)
    setup = resolve_device(device)
    task = bundle.build_task().to(setup.device)
    starts = range(0, len(centres), batch_size)
    batches = (
        cut_patches(slide, centres[i : i + batch_size], geometry, pixel, normalizer=normalizer)
        for i in starts
    )
    batches = tqdm(
        batches, total=len(starts), desc=f"predict {Path(slide_path).name}", unit="batch"
    )
    if spec.context:  # embed every grid point, then read each one's neighbours on the grid
        embeddings = predict_images(task, batches, setup, tta=tta, features=True)
        predicted, depth_z = predict_from_embeddings(
            task, embeddings, spot_neighbours(centres), np.zeros(len(centres), np.int64), setup
        )
    else:
        predicted, depth_z = predict_images(task, batches, setup, tta=tta, depth=True)
    predicted = predicted.astype(np.float32)
    mean, std = np.asarray(cfg["target"]["mean"]), np.asarray(cfg["target"]["std"])
    obs = pd.DataFrame(
        {"pixel_x": centres[:, 0], "pixel_y": centres[:, 1]},
        index=[f"p{i}" for i in range(len(centres))],
    )
    out = ad.AnnData(X=predicted, obs=obs, var=pd.DataFrame(index=pd.Index(cfg["genes"])))
    target_scale = (
        (predicted * std + mean).astype(np.float32) if cfg["target"]["zscore"] else predicted
    )
    transform = cfg["target"]["transform"]
    out.layers[transform] = target_scale
    depth = predicted_log_depth(cfg, depth_z)
    if depth is not None:
        out.obs["predicted_log_depth"] = depth.astype(np.float32)
        for scale in ("log1p", "library"):
            converted = convert_scale(target_scale, depth, transform, scale)
            if converted is not None:
                out.layers[scale] = converted
    out.obsm["spatial"] = centres
    out.uns.update(
        model={
            "variant": cfg["variant"],
            "fold": cfg["fold"],
            "backbone": spec.backbone,
            "aux_weight": spec.aux_weight,
            "size_px": geometry.size_px,
            "window_um": geometry.window_um,
            "train_patients": cfg["train_patients"],
        },
        slide=str(slide_path),
        pixel_size_um=pixel,
        pitch_um=float(pitch_um) if positions is None else None,
        target=f"X: z-scored {cfg['target']['transform']} with training statistics",
    )
    logger.info(
        "%s: predicted %d genes at %d positions (%.3f um/px, window %d px)",
        slide_path,
        out.n_vars,
        out.n_obs,
        pixel,
        window,
    )
    return out


def default_genes(panel: list[str], n: int = 4) -> list[str]:
    """ERBB2 when predicted, then the panel's leading (most expressed) genes."""
    first = [g for g in ("ERBB2",) if g in panel]
    return first + [g for g in panel if g not in first][: n - len(first)]


def check_genes(bundle: ModelBundle, genes: list[str]) -> list[str]:
    """Requested genes must be in the model's panel (else an error listing what is)."""
    panel = set(bundle.config["genes"])
    missing = [g for g in genes if g not in panel]
    if missing:
        raise DataError(
            f"genes {missing} are not in the panel of model {bundle.config.get('variant')} "
            f"(it predicts {len(panel)} genes, e.g. {sorted(panel)[:5]}); the model was trained on another panel"
        )
    return genes


#: The name of the depth map in the maps figure.
DEPTH_MAP = "log read depth"


def slide_maps_figure(result: ad.AnnData, genes: list[str]):
    """Predicted maps over the slide's H&E, as a PIL image: the depth head's log read
    depth first (when the model has one), then ``genes`` (z-scored targets)."""
    # deferred: matplotlib loads only when a map is drawn, not for predictions alone
    from ..evaluation.plots import to_image
    from ..evaluation.spot_maps import prediction_maps

    slide = open_slide(result.uns["slide"], Path(result.uns["slide"]).name)
    thumb, scale = slide.thumbnail()
    pitch_um = result.uns.get("pitch_um") or 100.0
    values, names = np.asarray(result[:, genes].X), list(genes)
    if "predicted_log_depth" in result.obs:
        depth = result.obs["predicted_log_depth"].to_numpy(np.float64)
        values, names = np.c_[depth, values], [DEPTH_MAP, *names]
    target = result.uns.get("target", "z-scored targets").removeprefix("X: ")
    fig = prediction_maps(
        thumb,
        scale,
        np.asarray(result.obsm["spatial"]),
        values,
        names,
        title=f"{Path(result.uns['slide']).name}: model {result.uns['model']['variant']} ({target})",
        spot_px=pitch_um / result.uns["pixel_size_um"],
    )
    return to_image(fig)
