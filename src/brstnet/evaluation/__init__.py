"""Evaluation: baselines, predictions tables and plots (NumPy / scikit-learn / matplotlib)."""
