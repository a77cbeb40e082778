"""Expression drawn on the H&E: spots at their physical size over the slide's thumbnail,
observed next to predicted (gene maps) or a whole slide's predictions."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.collections import EllipseCollection
from matplotlib.figure import Figure
from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

from brstnet.metrics import pearson_per_gene


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
        observed: [n, len(genes)] in the model scale.
        predicted: [n, len(genes)] in the model scale.
        pixel_size_um: Micrometres per image pixel.
    """
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
