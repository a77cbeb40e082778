"""``brstnet``: ``brstnet predict SLIDE ...`` for one slide; anything else runs the Kedro
project as ``kedro run`` would (``python -m brstnet`` inside the project)."""

import sys
from pathlib import Path
from typing import Any

from kedro.framework.cli.utils import find_run_command
from kedro.framework.project import configure_project


def main(*args, **kwargs) -> Any:
    if len(sys.argv) > 1 and sys.argv[1] == "predict" and not args:
        from brstnet.command import predict_command

        return predict_command(sys.argv[2:])
    package_name = Path(__file__).parent.name
    configure_project(package_name)

    interactive = hasattr(sys, "ps1")
    kwargs["standalone_mode"] = not interactive

    run = find_run_command(package_name)
    return run(*args, **kwargs)


if __name__ == "__main__":
    main()
