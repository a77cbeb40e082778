"""Gene panels and targets on hand-checkable tiny data."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from brstnet.features.panel import align_genes, select_panel
from brstnet.features.targets import apply_zscore, fit_zscore, invert_zscore, transform_counts


def _adata(counts: dict[str, list[int]], section: str = "A1") -> ad.AnnData:
    frame = pd.DataFrame(counts)
    frame.index = [f"{section}_{i}" for i in range(len(frame))]
    adata = ad.AnnData(
        sp.csr_matrix(frame.to_numpy(np.int32)),
        obs=pd.DataFrame(index=frame.index),
        var=pd.DataFrame(index=frame.columns),
    )
    adata.obs["section"] = section
    adata.obs["total_counts"] = frame.sum(axis=1).to_numpy()
    return adata


def test_detection_boundary_ties_and_aux() -> None:
    # 10 spots; detection: EDGE 1/10 (= 10 %, kept), BELOW 0/10 (dropped)
    counts = {
        "EDGE": [50] + [0] * 9,  # mean 5.0, detected in exactly 10 %
        "BELOW": [0] * 10,  # never detected
        "TIE_B": [2] * 10,  # mean 2.0
        "TIE_A": [2] * 10,  # mean 2.0: ties broken by symbol, A before B
        "LOW": [1] * 5 + [0] * 5,  # mean 0.5
    }
    panel = select_panel(_adata(counts), n_genes=2, min_detection=0.10)
    assert panel.loc[panel["set"] == "main", "gene"].tolist() == ["EDGE", "TIE_A"]
    assert panel.loc[panel["set"] == "aux", "gene"].tolist() == ["TIE_B", "LOW"]
    assert panel.loc[panel["gene"] == "EDGE", "detection"].item() == pytest.approx(0.1)
    capped = select_panel(_adata(counts), n_genes=2, min_detection=0.10, aux_max_genes=1)
    assert capped.loc[capped["set"] == "aux", "gene"].tolist() == ["TIE_B"]
    strict = select_panel(_adata(counts), n_genes=2, min_detection=0.11)
    assert "EDGE" not in set(strict["gene"])
    with pytest.raises(ValueError, match="only 4 genes are detected"):
        select_panel(_adata(counts), n_genes=5, min_detection=0.10)


def test_gene_missing_from_a_section_is_zero_there(caplog) -> None:
    caplog.set_level("INFO")
    a = _adata({"G1": [1, 2], "G2": [3, 4]}, "A1")
    b = _adata({"G1": [5, 6], "G3": [7, 8]}, "B1")
    combined = align_genes([a, b])
    assert sorted(combined.var_names) == ["G1", "G2", "G3"]
    dense = pd.DataFrame(combined.X.toarray(), index=combined.obs_names, columns=combined.var_names)
    assert (
        dense.loc["B1_0", "G2"] == 0
        and dense.loc["A1_1", "G3"] == 0
        and dense.loc["B1_1", "G3"] == 8
    )
    assert "1 in all, 2 in some only (counted as 0 where absent), 3 in total" in caplog.text


def test_transforms_by_hand() -> None:
    adata = _adata({"G1": [0, 3], "G2": [1, 1]})
    np.testing.assert_allclose(
        transform_counts(adata, ["G1"], "log1p")[:, 0], [0.0, np.log(4)], rtol=1e-6
    )
    # ST-Net: log((1 + c) / (n_genes + total)): spot 0 has total 1, spot 1 total 4; 2 genes
    np.testing.assert_allclose(
        transform_counts(adata, ["G1"], "stnet")[:, 0], [np.log(1 / 3), np.log(4 / 6)], rtol=1e-6
    )
    # library size: spot 1 = 3 of 4 reads -> log1p(7,500)
    np.testing.assert_allclose(
        transform_counts(adata, ["G1"], "library")[:, 0], [0.0, np.log1p(7500)], rtol=1e-5
    )
    with pytest.raises(ValueError, match="unknown target transform"):
        transform_counts(adata, ["G1"], "sqrt")


def test_zscore_with_a_constant_gene(caplog) -> None:
    values = np.array([[1.0, 5.0], [3.0, 5.0]], np.float32)
    stats = fit_zscore(values, ["VAR", "CONST"])
    assert stats["mean"].tolist() == [2.0, 5.0] and stats["std"].tolist() == [1.0, 1.0]
    assert "1 genes are constant on the training spots; their std is set to 1: CONST" in caplog.text
    z = apply_zscore(values, stats)
    np.testing.assert_allclose(z, [[-1.0, 0.0], [1.0, 0.0]])
    # test values use the saved training statistics, not their own
    np.testing.assert_allclose(apply_zscore(np.array([[7.0, 6.0]]), stats), [[5.0, 1.0]])
    np.testing.assert_allclose(invert_zscore(z, stats), values)


def test_library_targets_are_scanpys_normalize_total_and_log1p() -> None:
    import scanpy as sc

    rng = np.random.default_rng(0)
    counts = rng.poisson(rng.gamma(0.5, 4.0, (1, 40)), (30, 40)).astype(np.int32)
    counts[:, 0] += 1  # no empty spot
    adata = _adata({f"G{j}": counts[:, j].tolist() for j in range(40)})
    expected = adata.copy()
    expected.X = expected.X.astype(np.float32)
    sc.pp.normalize_total(expected, target_sum=1e4)
    sc.pp.log1p(expected)
    genes = ["G3", "G0", "G17"]  # a subset, normalised by every gene's reads
    np.testing.assert_allclose(
        transform_counts(adata, genes, "library"),
        expected[:, genes].X.toarray(),
        rtol=1e-6,
    )


def test_scales_convert_through_the_read_depth() -> None:
    from brstnet.features.targets import convert_scale

    counts = np.array([[0.0, 3.0], [10.0, 250.0]])
    total = np.array([300.0, 5000.0])
    depth = np.log(total)
    library = np.log1p(counts / total[:, None] * 1e4)
    log1p = np.log1p(counts)
    np.testing.assert_allclose(convert_scale(library, depth, "library", "log1p"), log1p, rtol=1e-5)
    np.testing.assert_allclose(convert_scale(log1p, depth, "log1p", "library"), library, rtol=1e-5)
    np.testing.assert_allclose(convert_scale(log1p, depth, "log1p", "log1p"), log1p, rtol=1e-6)
    # a doubled depth doubles every count of a composition
    doubled = convert_scale(library, depth + np.log(2), "library", "log1p")
    np.testing.assert_allclose(np.expm1(doubled), 2 * counts, rtol=1e-4)
    assert convert_scale(log1p, depth, "stnet", "log1p") is None


def test_smoothing_averages_each_spot_with_its_grid_neighbours_in_its_section() -> None:
    from brstnet.features.targets import smooth_targets

    # a 3 x 3 square grid (200 um pitch in pixels) in section A1, one lone spot in B1
    xy = [(x * 290.0, y * 290.0) for y in range(3) for x in range(3)] + [(290.0, 290.0)]
    adata = _adata({"G1": list(range(10))})
    adata.obs["section"] = ["A1"] * 9 + ["B1"]
    adata.obsm["spatial"] = np.asarray(xy)
    values = np.arange(10, dtype=np.float32)[:, None]
    smoothed = smooth_targets(values, adata)[:, 0]
    assert smoothed[4] == pytest.approx(np.mean(range(9)))  # the centre: all 9 spots
    assert smoothed[0] == pytest.approx(np.mean([0, 1, 3, 4]))  # a corner: itself + 3
    assert smoothed[1] == pytest.approx(np.mean([0, 1, 2, 3, 4, 5]))  # an edge: itself + 5
    assert smoothed[9] == 9.0  # another section at the same position is no neighbour
