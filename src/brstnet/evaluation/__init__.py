"""Evaluation as library functions (no Kedro, no MLflow), each node of the evaluation
pipeline a thin adapter over one of them:

- :mod:`.predictions`: a fold's held-out predictions as AnnData (``predict_fold``).
- :mod:`.baselines`: the training-mean and ridge baselines (``baseline_predictions``).
- :mod:`.summary`: per-gene table and metrics of a variant, the summary across variants,
  the section and genes its maps show.
- :mod:`.plots`: histograms, gene maps and the summary plot (matplotlib).
- :mod:`.tracking`: what a variant's MLflow run holds, as a plain record.
"""
