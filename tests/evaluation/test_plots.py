"""A variant's histogram and gene maps on a synthetic H&E image."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
from PIL import Image

from brstnet.evaluation.plots import variant_figures
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
    assert titles == [
        "G1 observed",
        "G1 predicted (r = 1.00)",
        "G2 observed",
        "G2 predicted (r = -1.00)",
    ]
    plt.close(histogram)
    plt.close(maps)
