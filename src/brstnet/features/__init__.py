"""Patient splits, gene panels and targets (NumPy / pandas / scanpy; no kedro)."""
