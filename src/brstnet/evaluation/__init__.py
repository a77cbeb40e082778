"""Evaluation as library functions (no Kedro, no MLflow), each node of the evaluation
pipeline a thin adapter over one of them:

- :mod:`.predictions`: a fold's held-out predictions as AnnData (``predict_fold``).
- :mod:`.baselines`: the training-mean and ridge baselines (``baseline_predictions``).
- :mod:`.selection`: inner selection of trained candidates against the ridge baseline.
- :mod:`.held_out`: a variant's held-out spots of all folds on one set of genes and scales.
- :mod:`.summary`: per-gene table and registered figures of a variant
  (:mod:`brstnet.metrics`), the summary across variants.
- :mod:`.map_choice`: the section and genes a variant's maps show.
- :mod:`.plots`: histograms, the summary plot, epoch curves, robustness (matplotlib).
- :mod:`.spot_maps`: expression drawn on the H&E (gene maps, a slide's predictions).
- :mod:`.degradations`: degraded copies of a slide (pixel size, stain, JPEG).
- :mod:`.robustness`: a variant's r on held-out sections re-cut from those copies.
- :mod:`.tracking`: what a variant's MLflow run holds, as a plain record.
- :mod:`.params`: the ``evaluation`` parameter block, typed.
"""
