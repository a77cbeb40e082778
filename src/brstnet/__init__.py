"""brstnet: predict spatial gene expression from H&E images of breast cancer."""

__version__ = "0.1.0"

import warnings as _warnings

# MLflow asks every PythonModel subclass (kedro-mlflow's, brstnet.inference.pyfunc's) for
# type hints on predict, once per process at import; both log a signature instead.
_warnings.filterwarnings(
    "ignore", category=UserWarning, module="mlflow.pyfunc.utils.data_validation"
)
