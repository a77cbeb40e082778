"""A variant's histogram, gene maps on a synthetic H&E image, the summary plot and the
epoch curves: what a reader needs is on the figure (labels, legends, scales)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from brstnet.evaluation.plots import epoch_curves, r_histogram, summary_plot, variant_figures
from tests.evaluation.folds import predictions


def test_variant_figures_draw_the_largest_section(tmp_path) -> None:
    import matplotlib.pyplot as plt

    x = np.array([1.0, 2.0, 3.0, 4.0])
    fold_a = predictions(np.c_[x, x], np.c_[x, -x], ["G1", "G2"], "AAAA", variant="m")
    fold_b = predictions(np.c_[x, x][:2], np.c_[x, x][:2], ["G1", "G2"], "BB", variant="m")
    per_gene = pd.DataFrame(
        {"gene": ["G1", "G2"], "median_r": [1.0, 0.0], "r_A": [1.0, -1.0], "r_B": [1.0, 1.0]}
    )
    Image.fromarray(np.full((120, 160, 3), 200, np.uint8)).save(tmp_path / "he.png")
    section = ad.AnnData(
        np.zeros((1, 1)), uns={"image_path": str(tmp_path / "he.png"), "pixel_size_um": 2.0}
    )

    def never() -> ad.AnnData:
        raise AssertionError("only the drawn section is loaded")

    histogram, maps = variant_figures(
        per_gene,
        [fold_a, fold_b],
        {"A1": lambda: section, "B1": never},
        n_best_genes=1,
        map_genes=["G2"],
    )
    assert histogram.axes[0].get_title() == "m\n1 of 2 genes r > 0, 1 > 0.5, median 0.500, 0 NaN"
    assert "held-out section A1 (patient A)" in maps.get_suptitle()
    titles = [ax.get_title() for ax in maps.axes if ax.get_title()]
    # r of the section drawn (A1: its four spots), not of another section or the median
    assert titles == [
        "G1 observed",
        "G1 predicted (r = 1.00 on this section)",
        "G2 observed",
        "G2 predicted (r = -1.00 on this section)",
    ]
    image_axes = [ax for ax in maps.axes if ax.get_title()]
    # observed and predicted of a gene on one colour scale, with one labelled colour bar
    for observed_ax, predicted_ax in zip(image_axes[0::2], image_axes[1::2], strict=True):
        (obs_spots,), (pred_spots,) = observed_ax.collections, predicted_ax.collections
        assert obs_spots.get_clim() == pred_spots.get_clim()
    colour_bars = [ax for ax in maps.axes if not ax.get_title()]
    assert [ax.get_ylabel() for ax in colour_bars] == [
        "G1, z-scored log(1 + count)",
        "G2, z-scored log(1 + count)",
    ]
    g2_observed = image_axes[2].collections[0].get_clim()
    # pooled 2nd / 98th percentiles of observed 1..4 and predicted -1..-4: -4 + 0.02 * 7
    assert g2_observed == pytest.approx((-3.86, 3.86))
    # a 1 mm scale bar on every map: 1000 um / 2 um per px = 500 image px, in thumbnail px
    for ax in image_axes:
        (bar,) = [a for a in ax.artists if a.__class__.__name__ == "AnchoredSizeBar"]
        assert bar.txt_label.get_text() == "1 mm"
        (rectangle,) = bar.size_bar.get_children()
        assert rectangle.get_width() == pytest.approx(
            500.0
        )  # the synthetic image is its own thumbnail
    plt.close(histogram)
    plt.close(maps)


def test_histogram_labels_the_half_line_and_says_when_no_r_is_finite() -> None:
    import matplotlib.pyplot as plt

    fig = r_histogram(pd.DataFrame({"median_r": [0.6, 0.2, np.nan]}), title="m")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["r = 0.5"]
    assert not [t for t in ax.texts if "no finite r" in t.get_text()]
    assert sum(p.get_height() for p in ax.patches) == 2
    plt.close(fig)
    fig = r_histogram(pd.DataFrame({"median_r": [np.nan, np.nan]}), title="baseline_mean")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.texts] == ["no finite r\n(2 genes, all NaN)"]
    assert ax.get_title() == "baseline_mean\n0 of 2 genes r > 0, 0 > 0.5, median n/a, 2 NaN"
    plt.close(fig)


def test_summary_plot_reads_the_gene_specific_r_first_with_a_legend_and_nan_marked() -> None:
    import matplotlib.pyplot as plt

    summary = pd.DataFrame(
        {
            "variant": ["resnet18_aux", "baseline_mean", "reference_read_depth"],
            "mean_r_libnorm": [0.3, np.nan, 0.5],
            "median_partial_r": [0.1, np.nan, np.nan],
            "median_r_log1p": [0.5, np.nan, 0.77],
            "genes_r_gt_0_5_log1p": [4, 0, 9],
            "aCC": [0.2, np.nan, 0.4],
        }
    )
    fig = summary_plot(summary)
    first = fig.axes[0]
    assert first.get_title() == "r, library-normalised (field's headline)"
    assert first.get_ylabel() == "mean r over genes and held-out patients"
    # BrST-Net's figures on log1p, which follow read depth, come after the gene-specific ones
    assert [ax.get_title() for ax in fig.axes][1:] == [
        "median partial r | read depth",
        "median r on log1p (BrST-Net)",
        "genes r > 0.5 on log1p",
    ]
    assert all(ax.get_ylabel() for ax in fig.axes)
    legend = [t.get_text() for t in first.get_legend().get_texts()]
    assert legend == ["models", "baselines", "reference (not a model)", "NaN: r undefined"]
    heights = [p.get_height() for p in first.patches[:3]]
    assert heights == [0.3, 0.0, 0.5]  # NaN drawn as no bar ...
    # ... marked, inside the axes (x in data, y in axes units) whatever the data's sign
    assert [(t.get_text(), t.get_position()) for t in first.texts] == [("NaN", (1, 0.03))]
    second = fig.axes[1]  # median partial r: NaN for the baseline and the reference
    assert [t.get_position()[0] for t in second.texts] == [1, 2]
    colours = {p.get_facecolor()[:3] for p in first.patches[:3]}
    assert len(colours) == 3
    plt.close(fig)


def test_epoch_curves_plot_the_main_loss_apart_from_the_auxiliary_loss() -> None:
    import matplotlib.pyplot as plt

    aux = pd.DataFrame(
        {
            "stage": ["final", "final"],
            "epoch": [2, 1],
            "loss_main": [0.5, 0.9],
            "loss_aux": [0.3, 0.6],
            "val_mean_r": [np.nan, np.nan],
        }
    )
    fig = epoch_curves([aux, aux.assign(loss_aux=0.0)], title="m")
    main_ax, aux_ax, val_ax = fig.axes
    assert main_ax.get_title() == "main-gene loss (MSE)"
    assert [list(line.get_ydata()) for line in main_ax.lines] == [[0.9, 0.5], [0.9, 0.5]]
    # fold 1 has no auxiliary head (its loss_aux is 0): not drawn as a curve at 0
    assert [list(line.get_ydata()) for line in aux_ax.lines] == [[0.6, 0.3]]
    assert [t.get_text() for t in val_ax.texts] == ["no epochs"]
    plt.close(fig)
