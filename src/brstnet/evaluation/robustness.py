"""Do the predictions hold on other scanners? Held-out sections re-cut from degraded
copies of their images, at the same physical window.

The conditions a user's slide can differ by (ST-Net / HEST report none of them):

- ``pixel_size``: a coarser scan (e.g. 2 or 4 um/px instead of ~0.7): the image is
  resampled (anti-aliased) to that pixel size and the window cut at it, so it covers
  the same micrometres with fewer pixels;
- ``stain_shift``: another stain protocol: haematoxylin optical density scaled by
  1 + s and eosin by 1 - s in HED space (Ruifrok and Johnston's colour deconvolution,
  scikit-image's matrices);
- ``jpeg``: lossy compression at a given quality (Pillow's encoder).

Every degraded slide is a :class:`~brstnet.st.slides.Slide` read region by region over
the original (TIFF slides are never loaded whole), and every window goes through
:func:`~brstnet.st.patches.cut_patches` with the model's own geometry and stain
normalisation: the path a user's new slide takes through ``brstnet predict``.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
from PIL import Image
from skimage.color import hed_from_rgb, rgb_from_hed

from brstnet.features.rows import held_out_rows
from brstnet.st.patches import cut_patches
from brstnet.st.slides import Slide, open_slide
from brstnet.st.stain import StainNormalizer

if TYPE_CHECKING:
    import anndata as ad

    from brstnet.st.geometry import PatchGeometry

logger = logging.getLogger(__name__)

ORIGINAL = "original"


@dataclass(frozen=True)
class Condition:
    """One way a slide can differ from the training slides.

    Attributes:
        kind: ``original``, ``pixel_size`` (value: um/px), ``stain_shift`` (value: s),
            ``jpeg`` (value: quality).
        value: The condition's strength.
    """

    kind: Literal["original", "pixel_size", "stain_shift", "jpeg"]
    value: float = 0.0

    @property
    def name(self) -> str:
        """``original``, ``pixel_size_4um``, ``stain_shift_0.3``, ``jpeg_q50``."""
        if self.kind == ORIGINAL:
            return ORIGINAL
        if self.kind == "pixel_size":
            return f"pixel_size_{self.value:g}um"
        if self.kind == "jpeg":
            return f"jpeg_q{int(self.value)}"
        return f"stain_shift_{self.value:g}"


def conditions(
    *, pixel_sizes_um: Sequence[float], stain_shifts: Sequence[float], jpeg_qualities: Sequence[int]
) -> list[Condition]:
    """The original and every configured degradation, in that order."""
    return (
        [Condition(ORIGINAL)]
        + [Condition("pixel_size", float(v)) for v in pixel_sizes_um]
        + [Condition("stain_shift", float(v)) for v in stain_shifts]
        + [Condition("jpeg", float(v)) for v in jpeg_qualities]
    )


def hed_shift(rgb: np.ndarray, strength: float) -> np.ndarray:
    """[h, w, 3] uint8 -> the same with haematoxylin OD x (1 + s), eosin OD x (1 - s).

    Colour deconvolution with Ruifrok and Johnston's H-E-DAB matrix (scikit-image's
    ``hed_from_rgb`` / ``rgb_from_hed``) on optical densities -log((I + 1) / 256); with
    s = 0 the image comes back unchanged (skimage's ``hed2rgb(rgb2hed(x))`` does not).
    """
    od = -np.log((rgb.astype(np.float64) + 1.0) / 256.0)
    hed = od @ hed_from_rgb
    hed[..., 0] *= 1.0 + strength
    hed[..., 1] *= 1.0 - strength
    out = 256.0 * np.exp(-(hed @ rgb_from_hed)) - 1.0
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def jpeg_roundtrip(rgb: np.ndarray, quality: int) -> np.ndarray:
    """[h, w, 3] uint8 encoded as JPEG at ``quality`` and decoded again."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    return np.asarray(Image.open(buffer).convert("RGB"))


class TransformedSlide(Slide):
    """A slide whose every region goes through a pixel transform (stain, compression)."""

    def __init__(self, slide: Slide, transform: Callable[[np.ndarray], np.ndarray]) -> None:
        self.slide, self.transform = slide, transform
        self.width, self.height = slide.width, slide.height

    def region(self, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        return self.transform(self.slide.region(x0, y0, x1, y1))

    def thumbnail(self) -> tuple[np.ndarray, float]:
        thumb, scale = self.slide.thumbnail()
        return self.transform(thumb), scale


class ResampledSlide(Slide):
    """A slide at a coarser pixel size: each region is read from the original and
    resampled with an anti-aliasing (Lanczos) filter, as a lower-resolution scan."""

    def __init__(self, slide: Slide, factor: float) -> None:
        if factor >= 1:
            raise ValueError(f"resampling factor {factor} must be < 1 (a coarser pixel size)")
        self.slide, self.factor = slide, factor
        self.width = max(1, int(slide.width * factor))
        self.height = max(1, int(slide.height * factor))

    def region(self, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        f = self.factor
        ox0, oy0 = int(np.floor(x0 / f)), int(np.floor(y0 / f))
        ox1 = min(int(np.ceil(x1 / f)), self.slide.width)
        oy1 = min(int(np.ceil(y1 / f)), self.slide.height)
        source = self.slide.region(ox0, oy0, ox1, oy1)
        return np.asarray(
            Image.fromarray(source).resize((x1 - x0, y1 - y0), Image.Resampling.LANCZOS)
        )

    def thumbnail(self) -> tuple[np.ndarray, float]:
        thumb, scale = self.slide.thumbnail()
        return thumb, scale / self.factor


def degraded(
    slide: Slide, pixel_size_um: float, condition: Condition
) -> tuple[Slide, float, float] | None:
    """The slide as ``condition`` changes it, its pixel size, and the factor that takes
    the original's pixel coordinates to it; None when the condition does not apply (a
    pixel size at or below the slide's own: no upsampled "scan")."""
    if condition.kind == ORIGINAL:
        return slide, pixel_size_um, 1.0
    if condition.kind == "pixel_size":
        if condition.value <= pixel_size_um:
            return None
        factor = pixel_size_um / condition.value
        return ResampledSlide(slide, factor), condition.value, factor
    if condition.kind == "stain_shift":
        shift = TransformedSlide(slide, lambda rgb: hed_shift(rgb, condition.value))
        return shift, pixel_size_um, 1.0
    if condition.kind == "jpeg":
        jpeg = TransformedSlide(slide, lambda rgb: jpeg_roundtrip(rgb, int(condition.value)))
        return jpeg, pixel_size_um, 1.0
    raise ValueError(f"unknown condition kind {condition.kind!r}")


def degraded_patches(
    fold_input: ad.AnnData,
    sections: Mapping[str, ad.AnnData | Callable[[], ad.AnnData]],
    geometry: PatchGeometry,
    conditions: Sequence[Condition],
) -> dict[str, np.ndarray]:
    """Every held-out spot of a fold, re-cut from each condition's copy of its slide.

    Args:
        fold_input: The fold's model input (obs ``section``, ``role``, ``patch_row``;
            obsm ``spatial`` = pixel centres in the section's image).
        sections: Section name -> its AnnData (uns ``image_path``, ``pixel_size_um``) or a
            loader of it; only the fold's held-out sections are read.
        geometry: The patch geometry of the store the models were trained on.
        conditions: What to cut (the original is re-cut too: it must equal the store).

    Returns:
        ``positions`` [n] (the held-out spots with a patch, :func:`held_out_rows`) and per
        condition name [n, size, size, 3] uint8. A condition that does not apply to a
        section (its pixel size is already as coarse) is left out for the whole fold.
    """
    positions = held_out_rows(fold_input)
    obs = fold_input.obs.iloc[positions]
    xy = np.asarray(fold_input.obsm["spatial"], dtype=float)[positions]
    size = geometry.size_px
    out = {c.name: np.zeros((len(positions), size, size, 3), np.uint8) for c in conditions}
    skipped: set[str] = set()
    normalizer = StainNormalizer(geometry.stain_reference)
    for section in pd.unique(obs["section"]):
        adata = sections[section]
        adata = adata() if callable(adata) else adata
        at = np.flatnonzero(obs["section"].to_numpy() == section)
        pixel = float(adata.uns["pixel_size_um"])
        slide = open_slide(adata.uns["image_path"], section)
        for condition in conditions:
            copy = degraded(slide, pixel, condition)
            if copy is None:
                skipped.add(condition.name)
                continue
            copy_slide, copy_pixel, scale = copy
            out[condition.name][at] = cut_patches(
                copy_slide, xy[at] * scale, geometry, copy_pixel, normalizer=normalizer
            )
        logger.info("robustness: %s re-cut under %d conditions", section, len(conditions))
    for name in sorted(skipped):
        logger.warning(
            "robustness: condition %s left out: a held-out slide is already that coarse", name
        )
        del out[name]
    return {"positions": positions, **out}


def evaluate_robustness(
    bundles: Sequence,
    fold_inputs: Sequence[ad.AnnData],
    degraded_by_fold: Sequence[Mapping[str, np.ndarray]],
    *,
    batch_size: int,
    device: str,
    alpha: float,
) -> pd.DataFrame:
    """A variant's held-out r and partial r under each condition, over all its folds.

    Args:
        bundles: The variant's model per fold.
        fold_inputs: The model input of each bundle's fold.
        degraded_by_fold: :func:`degraded_patches` of each fold.
        batch_size, device: Prediction settings (``evaluation`` parameters).
        alpha: Level of the sign test (the per-gene tables' ``significant``).

    Returns:
        :func:`robustness_table` (empty when no condition was cut).
    """
    from brstnet.features.targets import predicted_log_depth
    from brstnet.training.data import PatchBatches
    from brstnet.training.devices import resolve_device
    from brstnet.training.fold_inputs import fold_neighbours
    from brstnet.training.loop import predict

    from .predictions import check_panel, predictions_anndata
    from .summary import evaluate_predictions

    setup = resolve_device(device)
    names = [k for k in degraded_by_fold[0] if k != "positions"] if degraded_by_fold else []
    by_condition: dict[str, list[ad.AnnData]] = {name: [] for name in names}
    for bundle, fold_input, degraded_set in zip(
        bundles, fold_inputs, degraded_by_fold, strict=True
    ):
        check_panel(bundle.config, fold_input)
        task = bundle.build_task().to(setup.device)
        variant, fold = bundle.config["variant"], int(bundle.config["fold"])
        positions = degraded_set["positions"]
        neighbours, groups = (
            fold_neighbours(fold_input, positions) if bundle.spec.context else (None, None)
        )
        for name in names:
            patches = degraded_set[name]
            predicted, depth_z = predict(
                task,
                PatchBatches(
                    patches, np.arange(len(patches)), neighbours=neighbours, groups=groups
                ),
                setup,
                batch_size=batch_size,
                depth=True,
            )
            by_condition[name].append(
                predictions_anndata(
                    fold_input,
                    positions,
                    predicted,
                    variant=variant,
                    fold=fold,
                    predicted_log_depth=predicted_log_depth(bundle.config, depth_z),
                )
            )
    metrics = {
        name: evaluate_predictions(preds, alpha=alpha)[1] for name, preds in by_condition.items()
    }
    return robustness_table(metrics)


def robustness_table(metrics: Mapping[str, dict]) -> pd.DataFrame:
    """One row per condition: median r, median partial r, genes r > 0.5, and the share of
    the original's median r (and partial r) kept.

    Args:
        metrics: Condition name -> headline metrics (:func:`brstnet.metrics.summarise`),
            in the order to report; includes ``original`` unless empty.
    """
    columns = [
        "condition",
        "median_r",
        "median_partial_r",
        "genes_r_gt_0_5",
        "median_r_kept",
        "median_partial_r_kept",
    ]
    if not metrics:
        return pd.DataFrame(columns=columns)
    base = metrics[ORIGINAL]
    rows = [
        {
            "condition": name,
            "median_r": m["median_r"],
            "median_partial_r": m["median_partial_r"],
            "genes_r_gt_0_5": m["genes_r_gt_0_5"],
            "median_r_kept": _ratio(m["median_r"], base["median_r"]),
            "median_partial_r_kept": _ratio(m["median_partial_r"], base["median_partial_r"]),
        }
        for name, m in metrics.items()
    ]
    return pd.DataFrame(rows, columns=columns)


def _ratio(value: float, base: float) -> float:
    return float(value / base) if np.isfinite(value) and np.isfinite(base) and base > 0 else np.nan
