"""Project settings. There is no need to edit this file unless you want to change values
from the Kedro defaults. For further information, including these default values, see
https://docs.kedro.org/en/stable/configure/configuration_basics/#configuration"""

# Instantiated project hooks (executed in a Last-In-First-Out order): parameter
# validation and the registry's view of the run's configuration (the pipeline registry
# finds ProjectHooks' run_parameters among these hooks); MLflow runs left
# RUNNING by killed runs marked KILLED (brstnet/hooks.py); the session's dask.yml for
# the Dask runner (brstnet/runners/hooks.py).
from brstnet.hooks import ProjectHooks, TrackingHooks
from brstnet.pipelines import run_parameters
from brstnet.runners.hooks import DaskConfigHook

HOOKS = (ProjectHooks(), TrackingHooks(), DaskConfigHook())

# Installed plugins for which to disable hook auto-registration.
# DISABLE_HOOKS_FOR_PLUGINS = ("kedro-viz",)

# Class that manages the KedroSession.
# from kedro.framework.session import KedroSession
# SESSION_CLASS = KedroSession

# Class that manages storing KedroSession data.
# from kedro.framework.session.store import BaseSessionStore
# SESSION_STORE_CLASS = BaseSessionStore
# Keyword arguments to pass to the `SESSION_STORE_CLASS` constructor.
# SESSION_STORE_ARGS = {
#     "path": "./sessions"
# }

# Directory that holds configuration.
# CONF_SOURCE = "conf"

# Class that manages how configuration is loaded.
# from kedro.config import OmegaConfigLoader

# CONFIG_LOADER_CLASS = OmegaConfigLoader

# Keyword arguments to pass to the `CONFIG_LOADER_CLASS` constructor: local over base,
# environments merged key by key, and the Dask runner's dask.yml (defined with the
# pipeline registry's own reading of the configuration, brstnet/pipelines/run_parameters.py).
CONFIG_LOADER_ARGS = run_parameters.CONFIG_LOADER_ARGS

# Class that manages Kedro's library components.
# from kedro.framework.context import KedroContext
# CONTEXT_CLASS = KedroContext

# Class that manages the Data Catalog.
# from kedro.io import DataCatalog
# DATA_CATALOG_CLASS = DataCatalog
