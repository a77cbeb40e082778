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
    """Histogram of per-gene median r over held-out patients, with the NaN count; the
    r = 0.5 line is labelled, and a table without a finite r says so."""
    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    r = table["median_r"].to_numpy(dtype=float)
    finite = r[np.isfinite(r)]
    ax.hist(finite, bins=np.linspace(-1, 1, 41), color="#4c72b0", edgecolor="white")
    ax.axvline(0, color="k", lw=0.8)
    ax.axvline(0.5, color="#c44e52", lw=0.8, ls="--", label="r = 0.5")
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    if not finite.size:
        ax.text(
            0.5,
            0.5,
            f"no finite r\n({len(r)} genes, all NaN)",
            ha="center",
            va="center",
            transform=ax.transAxes,
            fontsize=11,
        )
    med = f"{np.median(finite):.3f}" if finite.size else "n/a"
    ax.set(
        xlim=(-1, 1),
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


def colour_limits(*values: np.ndarray) -> tuple[float, float]:
    """One colour scale for all ``values``: their pooled 2nd and 98th percentiles."""
    pooled = np.concatenate([np.asarray(v, dtype=float).ravel() for v in values])
    pooled = pooled[np.isfinite(pooled)]
    if not pooled.size:
        return 0.0, 1.0
    lo, hi = np.percentile(pooled, [2, 98])
    return float(lo), float(hi if hi > lo else lo + 1e-6)


def _draw_spots(
    ax,
    thumbnail: np.ndarray,
    xy: np.ndarray,
    values: np.ndarray,
    diameter: float,
    extent,
    title: str,
    clim: tuple[float, float],
):
    """Spots at their physical diameter over the H&E, on the colour scale ``clim``."""
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
    spots.set_array(np.asarray(values, dtype=float))
    spots.set_clim(*clim)
    ax.add_collection(spots)
    x0, x1, y0, y1 = extent
    ax.set(xlim=(x0, x1), ylim=(y1, y0), xticks=[], yticks=[])
    ax.set_title(title, fontsize=9)
    return spots


def scale_bar(ax, px_per_mm: float) -> None:
    """A 1 mm bar in the lower right corner of an image axis (``px_per_mm`` in its
    data units)."""
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    ax.add_artist(
        AnchoredSizeBar(
            ax.transData,
            px_per_mm,
            "1 mm",
            "lower right",
            pad=0.4,
            color="black",
            frameon=True,
            size_vertical=max(px_per_mm / 40, 1.0),
            fontproperties={"size": 8},
        )
    )


def gene_maps(
    thumbnail: np.ndarray,
    scale: float,
    spots_xy: np.ndarray,
    observed: np.ndarray,
    predicted: np.ndarray,
    genes: list[str],
    *,
    title: str,
    spot_diameter_px: float,
    pixel_size_um: float | None = None,
) -> Figure:
    """Observed vs predicted expression drawn on the H&E, one row per gene.

    Observed and predicted share one colour scale per gene (one labelled colour bar);
    the predicted panel's title holds r over the spots drawn (this section); a 1 mm scale
    bar is drawn when the pixel size is known.

    Args:
        thumbnail: [h, w, 3] H&E thumbnail; ``scale`` thumbnail px per image px.
        spots_xy: [n, 2] spot centres in image pixels.
        observed, predicted: [n, len(genes)] in the model scale.
        pixel_size_um: Micrometres per image pixel.
    """
    from brstnet.metrics import pearson_per_gene

    fig, axes = plt.subplots(
        len(genes), 2, figsize=(8.6, 3.6 * len(genes)), layout="constrained", squeeze=False
    )
    xy = np.asarray(spots_xy) * scale
    diameter = spot_diameter_px * scale
    extent = _extent(xy, diameter * 2, thumbnail.shape)
    r = pearson_per_gene(observed, predicted)
    for row, gene in enumerate(genes):
        clim = colour_limits(observed[:, row], predicted[:, row])
        suffix = f"r = {r[row]:.2f} on this section" if np.isfinite(r[row]) else "r undefined"
        _draw_spots(
            axes[row, 0],
            thumbnail,
            xy,
            observed[:, row],
            diameter,
            extent,
            f"{gene} observed",
            clim,
        )
        spots = _draw_spots(
            axes[row, 1],
            thumbnail,
            xy,
            predicted[:, row],
            diameter,
            extent,
            f"{gene} predicted ({suffix})",
            clim,
        )
        bar = fig.colorbar(spots, ax=list(axes[row]), shrink=0.7)
        bar.set_label(f"{gene}, z-scored log(1 + count)", fontsize=8)
        if pixel_size_um:
            for ax in axes[row]:
                scale_bar(ax, 1000.0 / pixel_size_um * scale)
    fig.suptitle(f"{title}\nobserved and predicted on one colour scale per gene", fontsize=10)
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
        spots = _draw_spots(
            ax,
            thumbnail,
            xy,
            predicted[:, i],
            spot_px * scale,
            extent,
            f"{gene} predicted",
            colour_limits(predicted[:, i]),
        )
        fig.colorbar(spots, ax=ax, shrink=0.7)
    for ax in flat[n:]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    return fig


#: Bar colours of the summary plot, by kind of variant.
KIND_COLOURS = {"model": "#4c72b0", "baseline": "#8c8c8c", "reference": "#d9a441"}


def variant_kind(variant: str) -> str:
    """``baseline``, ``reference`` or ``model``, from the variant's name."""
    if variant.startswith("baseline"):
        return "baseline"
    return "reference" if variant.startswith("reference") else "model"


def summary_plot(summary: pd.DataFrame) -> Figure:
    """Bars per variant, gene-specific figures first: mean r on library-normalised values
    (the field's headline, widest panel), median partial r given read depth, then
    BrST-Net's statistics on log(1 + count): median r and genes with r > 0.5 (these
    follow read depth, hence last). Models blue, baselines grey, the read-depth reference
    ochre (legend); an undefined value is marked NaN on the axis, never drawn as 0."""
    panels = (
        (
            "mean_r_libnorm",
            "r, library-normalised (field's headline)",
            "mean r over genes and held-out patients",
        ),
        ("median_partial_r", "median partial r | read depth", "median partial r"),
        ("median_r_log1p", "median r on log1p (BrST-Net)", "median r over genes"),
        ("genes_r_gt_0_5_log1p", "genes r > 0.5 on log1p", "genes"),
    )
    fig, axes = plt.subplots(
        1,
        len(panels),
        figsize=(6 + 2.0 * len(summary), 4.4),
        layout="constrained",
        gridspec_kw={"width_ratios": [1.6, 1, 1, 1]},
    )
    labels = summary["variant"].tolist()
    kinds = [variant_kind(v) for v in labels]
    colours = [KIND_COLOURS[k] for k in kinds]
    for ax, (column, name, ylabel) in zip(axes, panels, strict=True):
        values = (
            summary[column].astype(float) if column in summary else pd.Series(np.nan, summary.index)
        )
        ax.bar(labels, values.fillna(0), color=colours)
        for x, value in enumerate(values):
            if not np.isfinite(value):  # inside the axes whatever the data's sign
                ax.text(
                    x,
                    0.03,
                    "NaN",
                    ha="center",
                    va="bottom",
                    fontsize=8,
                    color="#c44e52",
                    rotation=90,
                    transform=ax.get_xaxis_transform(),
                )
        ax.set_title(name, fontsize=10 if column == panels[0][0] else 9)
        ax.set_ylabel(ylabel, fontsize=9)
        ax.axhline(0, color="black", linewidth=0.5)
        ax.tick_params(axis="x", rotation=60, labelsize=8)
    from matplotlib.patches import Patch

    names = {"model": "models", "baseline": "baselines", "reference": "reference (not a model)"}
    axes[0].legend(
        handles=[Patch(color=KIND_COLOURS[k], label=names[k]) for k in dict.fromkeys(kinds)]
        + [Patch(color="white", label="NaN: r undefined")],
        fontsize=8,
        loc="best",
    )
    return fig


def epoch_curves(histories: Sequence[pd.DataFrame], *, title: str) -> Figure:
    """A trained variant's epoch curves per fold and stage: the main-gene loss, the
    auxiliary loss (apart, so variants with and without the auxiliary head compare on the
    main loss) and the validation mean r."""
    panels = (
        ("loss_main", "main-gene loss (MSE)"),
        ("loss_aux", "auxiliary loss (MSE)"),
        ("val_mean_r", "validation mean r"),
    )
    fig, axes = plt.subplots(1, len(panels), figsize=(13, 3.8), layout="constrained")
    for ax, (column, name) in zip(axes, panels, strict=True):
        drawn = False
        for fold, history in enumerate(histories):
            if "stage" not in history or column not in history:
                continue
            for stage, part in history.groupby("stage", sort=False):
                part = part.sort_values("epoch")
                if part[column].notna().any() and not (
                    column == "loss_aux" and (part[column].fillna(0) == 0).all()
                ):
                    ax.plot(part["epoch"], part[column], marker="o", label=f"fold {fold} {stage}")
                    drawn = True
        ax.set(title=name, xlabel="epoch")
        if drawn:
            ax.legend(fontsize=7)
        else:
            what = "no auxiliary head" if column == "loss_aux" else "no epochs"
            ax.text(0.5, 0.5, what, ha="center", va="center", transform=ax.transAxes)
    fig.suptitle(title, fontsize=10)
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
    pixel_size_um = float(adata.uns["pixel_size_um"])
    maps = gene_maps(
        thumb,
        scale,
        np.asarray(pred.obsm["spatial"]),
        np.asarray(pred[:, genes].layers["observed"]),
        np.asarray(pred[:, genes].X),
        genes,
        title=f"{variant}: held-out section {section} (patient {patient})",
        spot_diameter_px=float(adata.uns.get("spot_diameter_um", 100.0)) / pixel_size_um,
        pixel_size_um=pixel_size_um,
    )
    return histogram, maps
