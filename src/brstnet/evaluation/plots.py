"""Figures: per-gene r histograms, gene maps on the H&E, and the summary across variants."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from PIL import Image

from .summary import choose_maps

if TYPE_CHECKING:
    import anndata as ad


def to_image(fig: Figure, *, dpi: int = 110) -> Image.Image:
    """Render a figure to an RGB PIL image (and close it)."""
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def r_histogram(table: pd.DataFrame, *, title: str) -> Figure:
    """Histogram of per-gene median r over held-out patients, with the NaN count."""
    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    r = table["median_r"].to_numpy(dtype=float)
    finite = r[np.isfinite(r)]
    ax.hist(finite, bins=np.linspace(-1, 1, 41), color="#4c72b0", edgecolor="white")
    ax.axvline(0, color="k", lw=0.8)
    ax.axvline(0.5, color="#c44e52", lw=0.8, ls="--")
    med = f"{np.median(finite):.3f}" if finite.size else "n/a"
    ax.set(
        xlabel="median Pearson r over held-out patients",
        ylabel="genes",
        title=f"{title}\n{(finite > 0).sum()} of {len(r)} genes r > 0, {(finite > 0.5).sum()} > 0.5, "
        f"median {med}, {np.isnan(r).sum()} NaN",
    )
    return fig


def _extent(
    xy: np.ndarray, pad: float, shape: tuple[int, ...]
) -> tuple[float, float, float, float]:
    x0, x1 = max(xy[:, 0].min() - pad, 0), min(xy[:, 0].max() + pad, shape[1])
    y0, y1 = max(xy[:, 1].min() - pad, 0), min(xy[:, 1].max() + pad, shape[0])
    return x0, x1, y0, y1


def _draw_spots(
    fig: Figure,
    ax,
    thumbnail: np.ndarray,
    xy: np.ndarray,
    values: np.ndarray,
    diameter: float,
    extent,
    title: str,
) -> None:
    """Spots at their physical diameter over the H&E, on their own colour scale."""
    from matplotlib.collections import EllipseCollection

    ax.imshow(thumbnail)
    spots = EllipseCollection(
        diameter,
        diameter,
        0.0,
        units="xy",
        offsets=xy,
        offset_transform=ax.transData,
        cmap="viridis",
        alpha=0.9,
    )
    lo, hi = np.nanpercentile(values, [2, 98])
    spots.set_array(np.asarray(values, dtype=float))
    spots.set_clim(lo, hi if hi > lo else lo + 1e-6)
    ax.add_collection(spots)
    x0, x1, y0, y1 = extent
    ax.set(xlim=(x0, x1), ylim=(y1, y0), xticks=[], yticks=[])
    ax.set_title(title, fontsize=9)
    fig.colorbar(spots, ax=ax, shrink=0.7)


def gene_maps(
    thumbnail: np.ndarray,
    scale: float,
    spots_xy: np.ndarray,
    observed: np.ndarray,
    predicted: np.ndarray,
    genes: list[str],
    r: list[float],
    *,
    title: str,
    spot_diameter_px: float,
) -> Figure:
    """Observed vs predicted expression drawn on the H&E, one row per gene.

    Args:
        thumbnail: [h, w, 3] H&E thumbnail; ``scale`` thumbnail px per image px.
        spots_xy: [n, 2] spot centres in image pixels.
        observed, predicted: [n, len(genes)] in the model scale.
    """
    fig, axes = plt.subplots(
        len(genes), 2, figsize=(8, 3.6 * len(genes)), layout="constrained", squeeze=False
    )
    xy = np.asarray(spots_xy) * scale
    diameter = spot_diameter_px * scale
    extent = _extent(xy, diameter * 2, thumbnail.shape)
    for row, gene in enumerate(genes):
        suffix = f" (r = {r[row]:.2f})" if np.isfinite(r[row]) else ""
        _draw_spots(
            fig, axes[row, 0], thumbnail, xy, observed[:, row], diameter, extent, f"{gene} observed"
        )
        _draw_spots(
            fig,
            axes[row, 1],
            thumbnail,
            xy,
            predicted[:, row],
            diameter,
            extent,
            f"{gene} predicted{suffix}",
        )
    fig.suptitle(f"{title}\nz-scored log(1 + count), each map on its own colour scale", fontsize=10)
    return fig


def prediction_maps(
    thumbnail: np.ndarray,
    scale: float,
    xy_px: np.ndarray,
    predicted: np.ndarray,
    genes: list[str],
    *,
    title: str,
    spot_px: float,
) -> Figure:
    """Predicted expression of ``genes`` over a whole slide, one panel each, with the H&E."""
    n = len(genes) + 1
    cols = min(n, 3)
    rows = -(-n // cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(4.2 * cols, 3.8 * rows), layout="constrained", squeeze=False
    )
    xy = np.asarray(xy_px) * scale
    extent = _extent(xy, spot_px * scale, thumbnail.shape)
    flat = axes.ravel()
    flat[0].imshow(thumbnail)
    flat[0].set(xlim=extent[:2], ylim=(extent[3], extent[2]), xticks=[], yticks=[])
    flat[0].set_title("H&E", fontsize=9)
    for ax, (i, gene) in zip(flat[1:], enumerate(genes), strict=False):
        _draw_spots(
            fig, ax, thumbnail, xy, predicted[:, i], spot_px * scale, extent, f"{gene} predicted"
        )
    for ax in flat[n:]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    return fig


def summary_plot(summary: pd.DataFrame) -> Figure:
    """Bars per variant: median per-gene r, median partial r given read depth, genes with
    r > 0.5 and aCC; models blue, baselines grey, the read-depth reference ochre; an
    undefined value is written as NaN, not drawn as 0."""
    panels = (
        ("median_r", "median per-gene r"),
        ("median_partial_r", "median partial r | read depth"),
        ("genes_r_gt_0_5", "genes with median r > 0.5"),
        ("aCC", "aCC (pooled r, mean over genes)"),
    )
    fig, axes = plt.subplots(
        1, len(panels), figsize=(5 + 1.6 * len(summary), 4), layout="constrained"
    )
    labels = summary["variant"].tolist()
    colours = [
        "#8c8c8c"
        if v.startswith("baseline")
        else "#d9a441"
        if v.startswith("reference")
        else "#4c72b0"
        for v in labels
    ]
    for ax, (column, name) in zip(axes, panels, strict=True):
        values = (
            summary[column].astype(float) if column in summary else pd.Series(np.nan, summary.index)
        )
        ax.bar(labels, values.fillna(0), color=colours)
        for x, value in enumerate(values):
            if not np.isfinite(value):
                ax.text(x, 0, "NaN", ha="center", va="bottom", fontsize=8)
        ax.set_title(name, fontsize=10)
        ax.axhline(0, color="black", linewidth=0.5)
        ax.tick_params(axis="x", rotation=60, labelsize=8)
    return fig


def robustness_plot(tables: Mapping[str, pd.DataFrame]) -> Figure:
    """Median per-gene r and median partial r (given read depth) per degradation of the
    held-out slides, one line per variant; the original first."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), layout="constrained", sharey=False)
    drawn = False
    for variant, table in tables.items():
        if not len(table):
            continue
        drawn = True
        for ax, column in zip(axes, ("median_r", "median_partial_r"), strict=True):
            ax.plot(table["condition"], table[column], marker="o", label=variant)
    for ax, title in zip(axes, ("median per-gene r", "median partial r | read depth"), strict=True):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("held-out slides re-cut from")
        ax.set_ylabel(title.split(" | ")[0])
        ax.axhline(0, color="black", linewidth=0.5)
        ax.tick_params(axis="x", rotation=30, labelsize=8)
        if drawn:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "robustness evaluation off", ha="center", transform=ax.transAxes)
    return fig


def variant_figures(
    per_gene: pd.DataFrame,
    predictions: Sequence[ad.AnnData],
    sections: Mapping[str, ad.AnnData | Callable[[], ad.AnnData]],
    *,
    n_best_genes: int,
    map_genes: Sequence[str],
) -> tuple[Figure, Figure]:
    """A variant's per-gene r histogram and its gene maps on the H&E of the largest
    held-out section (section and genes as :func:`~brstnet.evaluation.summary.choose_maps`).

    Args:
        per_gene: The variant's per-gene table (``gene``, ``median_r``, ``r_<patient>``).
        predictions: One predictions AnnData per fold (obs ``section`` / ``patient``,
            obsm ``spatial`` [n, 2] image pixels, layer ``observed``).
        sections: Section name -> its AnnData (uns ``image_path``, ``pixel_size_um``,
            optionally ``spot_diameter_um``), or a loader of it; only the drawn one is read.
        n_best_genes: How many of the best genes to draw.
        map_genes: Genes always drawn when in the panel.
    """
    from brstnet.st.slides import open_slide

    variant = str(predictions[0].uns["variant"])
    histogram = r_histogram(per_gene.set_index("gene"), title=variant)
    choice = choose_maps(per_gene, predictions, n_best_genes=n_best_genes, map_genes=map_genes)
    section, genes = choice.section, choice.genes
    pred = predictions[choice.fold][predictions[choice.fold].obs["section"] == section]
    entry = sections[section]
    adata = entry() if callable(entry) else entry
    thumb, scale = open_slide(adata.uns["image_path"], section).thumbnail()
    patient = pred.obs["patient"].iloc[0]
    r = per_gene.set_index("gene")[f"r_{patient}"]
    maps = gene_maps(
        thumb,
        scale,
        np.asarray(pred.obsm["spatial"]),
        np.asarray(pred[:, genes].layers["observed"]),
        np.asarray(pred[:, genes].X),
        genes,
        [float(r.get(g, np.nan)) for g in genes],
        title=f"{variant}: held-out section {section} (patient {patient})",
        spot_diameter_px=float(adata.uns.get("spot_diameter_um", 100.0))
        / float(adata.uns["pixel_size_um"]),
    )
    return histogram, maps
