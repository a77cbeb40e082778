"""Test helpers: synthetic her2st sections and the project's own configuration.

Imported by test modules (``from tests.synthetic import ...``); fixtures live in conftest.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
#: The real her2st copy (override with BRSTNET_HER2ST_DIR).
HER2ST = Path(
    os.environ.get("BRSTNET_HER2ST_DIR", REPO.parent / "shared" / "data" / "her2st")
).resolve()

GENES = ("ERBB2", "GRB7", "ACTB", "KRT19", "MT-CO1")
PITCH_PX = 145.0  # 200 um / 145 px = 1.379 um/px
ORIGIN = (300.0, 250.0)


def synthetic_tissue(
    height: int,
    width: int,
    box: tuple[int, int, int, int],
    rng: np.random.Generator,
    *,
    strength: float = 1.0,
) -> np.ndarray:
    """A white slide with an H&E-like rectangle, made by Beer-Lambert mixing of the
    haematoxylin and eosin stain vectors: eosin-stained stroma with haematoxylin nuclei."""
    image = np.full((height, width, 3), 242, dtype=np.uint8)
    x0, y0 = max(box[0], 0), max(box[1], 0)
    x1, y1 = min(box[2], width), min(box[3], height)
    h, w = y1 - y0, x1 - x0
    stains = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11]])  # H, E optical densities
    conc = np.stack([rng.gamma(4.0, 0.1, (h, w)), rng.gamma(6.0, 0.12, (h, w))], axis=-1)
    nuclei = rng.random((h, w)) < 0.15
    conc[nuclei, 0] += rng.gamma(8.0, 0.15, int(nuclei.sum()))
    od = strength * conc @ stains
    image[y0:y1, x0:x1] = np.clip(240 * np.exp(-od), 0, 255).astype(np.uint8)
    return image


def write_section(
    root: Path,
    section: str,
    *,
    n_x: int = 4,
    n_y: int = 3,
    image_size: tuple[int, int] = (1000, 800),
    seed: int = 0,
) -> pd.DataFrame:
    """Write one section in the her2st layout; return its count table (spots x genes)."""
    rng = np.random.default_rng(seed)
    grid = [(x, y) for y in range(1, n_y + 1) for x in range(1, n_x + 1)]
    ids = [f"{x}x{y}" for x, y in grid]
    scale = np.array([1.0, 2.0, 20.0, 5.0, 8.0])
    counts = pd.DataFrame(
        rng.poisson(60 * scale, (len(grid), len(GENES))), index=ids, columns=list(GENES)
    )
    spots = pd.DataFrame(
        {
            "x": [x for x, _ in grid],
            "y": [y for _, y in grid],
            "new_x": [x + 0.01 for x, _ in grid],
            "new_y": [y - 0.01 for _, y in grid],
            "pixel_x": [ORIGIN[0] + (x + 0.01 - 1) * PITCH_PX for x, _ in grid],
            "pixel_y": [ORIGIN[1] + (y - 0.01 - 1) * PITCH_PX for _, y in grid],
            "selected": 1,
        }
    )
    (root / "data/ST-cnts").mkdir(parents=True, exist_ok=True)
    (root / "data/ST-spotfiles").mkdir(parents=True, exist_ok=True)
    counts.to_csv(root / f"data/ST-cnts/{section}.tsv.gz", sep="\t")
    spots.to_csv(root / f"data/ST-spotfiles/{section}_selection.tsv", sep="\t", index=False)
    width, height = image_size
    box = (
        int(ORIGIN[0] - 120),
        int(ORIGIN[1] - 120),
        int(ORIGIN[0] + (n_x - 1) * PITCH_PX + 120),
        int(ORIGIN[1] + (n_y - 1) * PITCH_PX + 120),
    )
    folder = root / f"data/ST-imgs/{section[0]}/{section}"
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(synthetic_tissue(height, width, box, rng)).save(
        folder / f"HE_{section}.jpg", quality=95
    )
    return counts


def dp_params(**overrides) -> dict:
    """data_processing parameters as in conf/base, with overrides (nested dicts merge)."""
    import yaml

    params = yaml.safe_load((REPO / "conf/base/parameters_data_processing.yml").read_text())[
        "data_processing"
    ]
    for key, value in overrides.items():
        if isinstance(value, dict):
            params[key] = {**params.get(key, {}), **value}
        else:
            params[key] = value
    return params


def project_catalog(root: Path):
    """The project's own catalog (conf/base/catalog.yml) with data/ moved under ``root``."""
    import yaml
    from kedro.io import DataCatalog

    config = yaml.safe_load((REPO / "conf/base/catalog.yml").read_text())
    for entry in config.values():
        for key in ("filepath", "path"):
            if key in entry and entry[key].startswith("data/"):
                entry[key] = str(root / entry[key])
    return DataCatalog.from_config(config)


def project_copy(root: Path, local: dict | None = None) -> Path:
    """A copy of the project's conf/, pyproject.toml and .telemetry under ``root`` (the
    package itself is installed), with ``local`` as its conf/local/parameters.yml, as a
    user would set it."""
    import shutil

    import yaml

    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(REPO / "conf", root / "conf", ignore=shutil.ignore_patterns("local"))
    (root / "conf/local").mkdir()
    if local:
        (root / "conf/local/parameters.yml").write_text(yaml.safe_dump(local))
    (root / "src").mkdir()
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    shutil.copy(REPO / ".telemetry", root / ".telemetry")  # as a clone has it
    return root


#: The tiny stand-in foundation encoder ("test_encoder" in the backbone registry).
TEST_ENCODER_REPO = "brstnet-tests/test-encoder"
TEST_ENCODER_REVISION = "0123456789abcdef0123456789abcdef01234567"


def stand_in_encoder():
    """The stand-in encoder's "pretrained" model: timm's test_vit with seeded weights."""
    import timm
    import torch

    with torch.random.fork_rng():
        torch.manual_seed(42)
        return timm.create_model("test_vit", num_classes=0, dynamic_img_size=True)


def save_test_encoder(folder: Path, model=None) -> Path:
    """The encoder in timm's Hugging Face layout (config.json + model.safetensors)."""
    from timm.models import save_for_hf

    model = stand_in_encoder() if model is None else model
    save_for_hf(model, str(folder), model_args={"dynamic_img_size": True}, safe_serialization=True)
    return folder


def write_test_encoder_cache(cache: Path, model=None) -> Path:
    """A Hugging Face cache holding the stand-in encoder, laid out as huggingface_hub
    writes it (models--<org>--<name>/snapshots/<revision>/, refs/main)."""
    repo = cache / f"models--{TEST_ENCODER_REPO.replace('/', '--')}"
    save_test_encoder(repo / "snapshots" / TEST_ENCODER_REVISION, model)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(TEST_ENCODER_REVISION)
    return cache


def gone_process_owner():
    """The :class:`brstnet.processes.Owner` of a process of this host that has exited."""
    import subprocess
    import sys

    import psutil

    from brstnet.processes import Owner, this_host

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.3)"])
    started = int(psutil.Process(proc.pid).create_time())
    proc.wait()
    return Owner(this_host(), proc.pid, started)
