"""Which training settings are best, judged on the inner validation split only?

Trains each candidate setting exactly as ``kedro run --pipelines=training`` trains its
inner folds (``brstnet.training.folds``), on the project's own catalog data (run
data_processing and feature_selection first), and prints, per candidate, the inner
validation's median per-gene r and median partial r given read depth at the chosen epoch,
next to the ridge baseline fitted and scored on the same inner split. No held-out patient
is read: this is how the default configuration is chosen (README, "Choosing settings").

Candidates come from a YAML list (``--candidates``), each ``{name, backbone, aux_weight,
context, pretrain, overrides: {model_training key: value}}``, or the built-in list below.
A candidate with ``pretrain: true`` fine-tunes from a SimCLR encoder (the ``pretraining``
parameters) pretrained on the inner split's training sections' tissue windows only (run
``kedro run --pipelines=pretraining --to-outputs=pretraining_windows`` first). They are
scored on the catalog's targets (``feature_selection.targets``: library-normalised by
default), against the ridge on the same targets. Results go to
``data/08_reporting/inner_selection.csv`` (and per fold to ``inner_selection_folds.csv``),
keeping earlier candidates' results unless ``--fresh`` (a search can run in parts);
checkpoints to ``data/06_models/selection/<candidate>``, so an interrupted search resumes.

    python benchmarks/inner_selection.py                      # the built-in candidates
    python benchmarks/inner_selection.py --only default aux_scanner --epochs 10
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]

#: Settings tried for the CPU default (resnet18, 112 px) on library-normalised targets
#: (issue 24): the depth head (detached, the default, or steering the trunk), the
#: auxiliary head, spatial context (the spot's grid neighbours and section), a SimCLR
#: encoder pretrained on the inner training slides' tissue windows. Earlier
#: searches (issue 13, log1p targets: scanner augmentations, learning rate, weight decay,
#: epochs) are in the README.
CANDIDATES = [
    {"name": "aux_depth"},
    {"name": "aux_nodepth", "overrides": {"depth_weight": 0.0}},
    {"name": "aux_depth_steers", "overrides": {"depth_detach": False}},
    {"name": "noaux_depth", "aux_weight": 0.0},
    {"name": "aux_depth_ctx", "context": True},
    {"name": "aux_depth_ssl", "pretrain": True},
    {"name": "aux_depth_ctx_ssl", "context": True, "pretrain": True},
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=Path, help="YAML list of candidates")
    parser.add_argument("--only", nargs="+", help="score only these candidate names")
    parser.add_argument("--epochs", type=int, help="override every candidate's epochs")
    parser.add_argument("--env", default=None, help="Kedro configuration environment")
    parser.add_argument(
        "--fresh", action="store_true", help="forget the results of earlier searches"
    )
    args = parser.parse_args()

    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    from brstnet.evaluation.selection import (
        Candidate,
        score_candidate,
        score_ridge,
        selection_table,
    )
    from brstnet.pretraining.train import pretrain_sections

    raw = yaml.safe_load(args.candidates.read_text()) if args.candidates else CANDIDATES
    candidates = [Candidate.from_dict(c) for c in raw]
    if args.only:
        unknown = set(args.only) - {c.name for c in candidates}
        if unknown:
            parser.error(f"unknown candidates {sorted(unknown)}")
        candidates = [c for c in candidates if c.name in args.only]

    os.chdir(REPO)
    bootstrap_project(REPO)
    with KedroSession.create(project_path=REPO, env=args.env) as session:
        catalog = session.load_context().catalog
        params = catalog.load("parameters")
        store = catalog.load("patch_store")
        splits = catalog.load("splits")
        partitions = catalog.load("model_inputs")
        pretrain_encoder = None
        if any(c.pretrain for c in candidates):
            windows, pretraining = catalog.load("pretraining_windows"), params["pretraining"]

            def pretrain_encoder(sections, out_dir):
                return pretrain_sections(windows, sections, pretraining, out_dir)

    fold_inputs = {
        int(key.removeprefix("fold_")): (value() if callable(value) else value)
        for key, value in partitions.items()
    }
    training = dict(params["model_training"])
    if args.epochs:
        training["epochs"] = args.epochs

    out = REPO / "data/08_reporting"
    # earlier candidates' rows are kept (a search can run in parts); rescored ones replaced
    rows = []
    if (out / "inner_selection_folds.csv").is_file() and not args.fresh:
        rescored = {c.name for c in candidates} | {"baseline_ridge"}
        earlier = pd.read_csv(out / "inner_selection_folds.csv")
        rows = earlier[~earlier["candidate"].isin(rescored)].to_dict("records")
    rows += score_ridge(fold_inputs, splits, store.patches)
    for candidate in candidates:
        tic = time.perf_counter()
        rows += score_candidate(
            candidate,
            fold_inputs,
            splits,
            store.patches,
            store.geometry,
            training,
            checkpoint_dir=REPO / "data/06_models/selection",
            pretrain_encoder=pretrain_encoder,
        )
        print(f"{candidate.name}: {time.perf_counter() - tic:.0f} s", flush=True)
        table = selection_table(rows)  # written after every candidate: nothing lost
        table.to_csv(out / "inner_selection.csv", index=False)
        pd.DataFrame(rows).to_csv(out / "inner_selection_folds.csv", index=False)
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(selection_table(rows).round(3).to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
