"""Charts of a variant's numbers and of the sweep: per-gene r histograms, the summary
across variants (its panels: the registered metrics with a ``plot`` position), epoch
curves, robustness; a variant's figures (histogram and gene maps)."""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from PIL import Image

from brstnet.metrics import plotted_metrics
from brstnet.metrics.headline import MEDIAN_PARTIAL_R, MEDIAN_R
from brstnet.metrics.per_gene import MEDIAN_R as MEDIAN_R_COLUMN
from brstnet.metrics.validation import VAL_MEAN_R
from brstnet.st.slides import open_slide

from .map_choice import choose_maps
from .spot_maps import gene_maps

if TYPE_CHECKING:
    import anndata as ad

__all__ = [
    "epoch_curves",
    "r_histogram",
    "robustness_plot",
    "summary_plot",
    "to_image",
    "variant_figures",
    "variant_kind",
]


def to_image(fig: Figure, *, dpi: int = 110) -> Image.Image:
    """Render a figure to an RGB PIL image (and close it)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def r_histogram(table: pd.DataFrame, *, title: str) -> Figure:
    """Histogram of per-gene median r over held-out patients, with the NaN count; the
    r = 0.5 line is labelled, and a table without a finite r says so."""
    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    r = table[MEDIAN_R_COLUMN].to_numpy(dtype=float)
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
    ochre (legend); an undefined value is marked NaN on the axis, never drawn as 0.

    The panels are the registered metrics with a ``plot`` position
    (:func:`brstnet.metrics.plotted_metrics`), titled by their label, the y axis by
    their ``axis``; the first one widest."""
    panels = plotted_metrics()
    fig, axes = plt.subplots(
        1,
        len(panels),
        figsize=(6 + 2.0 * len(summary), 4.4),
        layout="constrained",
        gridspec_kw={"width_ratios": [1.6] + [1] * (len(panels) - 1)},
        squeeze=False,
    )
    labels = summary["variant"].tolist()
    kinds = [variant_kind(v) for v in labels]
    colours = [KIND_COLOURS[k] for k in kinds]
    axes = axes[0]
    for ax, metric in zip(axes, panels, strict=True):
        column = metric.name
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
        ax.set_title(metric.label, fontsize=10 if metric is panels[0] else 9)
        ax.set_ylabel(metric.axis, fontsize=9)
        ax.axhline(0, color="black", linewidth=0.5)
        ax.tick_params(axis="x", rotation=60, labelsize=8)
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
        (VAL_MEAN_R.name, VAL_MEAN_R.label),
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
        for ax, column in zip(axes, (MEDIAN_R.name, MEDIAN_PARTIAL_R.name), strict=True):
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
    held-out section (section and genes as :func:`~brstnet.evaluation.map_choice.choose_maps`).

    Args:
        per_gene: The variant's per-gene table (``gene``, ``median_r``, ``r_<patient>``).
        predictions: One predictions AnnData per fold (obs ``section`` / ``patient``,
            obsm ``spatial`` [n, 2] image pixels, layer ``observed``).
        sections: Section name -> its AnnData (uns ``image_path``, ``pixel_size_um``,
            optionally ``spot_diameter_um``), or a loader of it; only the drawn one is read.
        n_best_genes: How many of the best genes to draw.
        map_genes: Genes always drawn when in the panel.
    """
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
