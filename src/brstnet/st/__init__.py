"""Spatial transcriptomics data: readers, geometry, tissue, stain and patches.

Plain NumPy / pandas / AnnData code: nothing here imports kedro or mlflow.
"""
