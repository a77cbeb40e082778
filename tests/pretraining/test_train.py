"""The pretraining loop: seeded, checkpointed, and a run killed with SIGKILL and rerun
ends with an uninterrupted run's weights."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from brstnet.models import ModelSpec
from brstnet.pretraining.train import PretrainConfig, pretrain
from brstnet.pretraining.weights import PretrainedTrunk, load_trunk, save_trunk
from brstnet.training.devices import resolve_device

CPU = resolve_device("cpu")


def _windows(n: int = 24, size: int = 32) -> np.ndarray:
    """Windows told apart by their colour (which no view changes much), with noise."""
    rng = np.random.default_rng(0)
    colours = rng.integers(30, 226, (n, 1, 1, 3))
    return np.clip(colours + rng.normal(0, 10, (n, size, size, 3)), 0, 255).astype(np.uint8)


def _config(epochs: int = 2, **kw) -> PretrainConfig:
    return PretrainConfig(
        backbone="test_resnet",
        img_size=32,
        epochs=epochs,
        batch_size=8,
        projection_hidden=16,
        projection_dim=8,
        stain_jitter=0.1,
        um_per_px=1.0,
        **kw,
    )


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_pretraining_learns_and_leaves_the_global_random_state_alone() -> None:
    before = torch.get_rng_state()
    result = pretrain(_windows(), np.arange(24), _config(epochs=3, lr=3e-3), CPU)
    assert torch.equal(torch.get_rng_state(), before)
    losses = [h["loss"] for h in result.history]
    assert len(losses) == 3 and all(np.isfinite(losses))
    assert losses[-1] < losses[0]
    again = pretrain(_windows(), np.arange(24), _config(epochs=3, lr=3e-3), CPU)
    assert _same(result.trunk_state, again.trunk_state)  # the seed fixes everything


def test_an_interrupted_run_resumes_to_the_uninterrupted_weights(tmp_path: Path) -> None:
    rows = np.arange(0, 24, 2)
    reference = pretrain(_windows(), rows, _config(epochs=3), CPU)

    def stop_after_the_first_epoch(epoch: int) -> None:
        raise KeyboardInterrupt

    checkpoint = tmp_path / "ssl.pt"
    with pytest.raises(KeyboardInterrupt):
        pretrain(
            _windows(),
            rows,
            _config(epochs=3),
            CPU,
            checkpoint=checkpoint,
            on_epoch_end=stop_after_the_first_epoch,
        )
    resumed = pretrain(_windows(), rows, _config(epochs=3), CPU, checkpoint=checkpoint)
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in reference.history]
    assert _same(resumed.trunk_state, reference.trunk_state)


def test_a_checkpoint_of_other_windows_is_not_resumed(tmp_path: Path, caplog) -> None:
    checkpoint = tmp_path / "ssl.pt"
    pretrain(_windows(), np.arange(12), _config(epochs=1), CPU, checkpoint=checkpoint)
    fresh = pretrain(_windows(), np.arange(12, 24), _config(epochs=1), CPU)
    other = pretrain(_windows(), np.arange(12, 24), _config(epochs=1), CPU, checkpoint=checkpoint)
    assert "starting afresh (differs in: rows)" in caplog.text
    assert _same(other.trunk_state, fresh.trunk_state)


def test_too_few_windows_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="needs at least 2"):
        pretrain(_windows(), np.arange(1), _config(), CPU)


def test_the_saved_trunk_loads_as_initial_weights(tmp_path: Path) -> None:
    from brstnet.models import load_initial_weights

    result = pretrain(_windows(), np.arange(24), _config(epochs=1), CPU)
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    path = tmp_path / "pretrained" / "test_resnet_fold0.safetensors"
    save_trunk(
        PretrainedTrunk(
            {"backbone": "test_resnet", "fold": 0}, result.trunk_state, None, checkpoints
        ),
        path,
    )
    assert not checkpoints.exists()  # removed once the weights are in place
    task = ModelSpec.for_backbone("test_resnet", n_main=3, img_size=32).build(seed=5)
    load_initial_weights(task.model.trunk, path)
    assert _same(task.model.trunk.state_dict(), result.trunk_state)
    loaded = load_trunk(path)
    assert loaded.metadata == {"backbone": "test_resnet", "fold": 0} and loaded.path == path


#: A pretraining in its own process: windows, settings, checkpoint, output file.
SCRIPT = """
import logging, sys
import numpy as np
from pathlib import Path
from brstnet.pretraining.train import PretrainConfig, pretrain
from brstnet.pretraining.weights import PretrainedTrunk, save_trunk
from brstnet.training.devices import resolve_device

logging.basicConfig(level=logging.INFO)
out = Path(sys.argv[1])
windows = np.random.default_rng(0).integers(0, 256, (96, 32, 32, 3), dtype=np.uint8)
cfg = PretrainConfig(backbone="test_resnet", img_size=32, epochs=6, batch_size=16,
                     projection_hidden=16, projection_dim=8, um_per_px=1.0)
result = pretrain(windows, np.arange(96), cfg, resolve_device("cpu"),
                  checkpoint=out / "checkpoints" / "simclr.pt")
save_trunk(PretrainedTrunk({"backbone": "test_resnet"}, result.trunk_state, None,
                           out / "checkpoints"), out / "trunk.safetensors")
"""


def _run(out: Path) -> subprocess.Popen:
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with open(out / "log.txt", "a") as log:
        return subprocess.Popen(
            [sys.executable, "-c", SCRIPT, str(out)], env=env, stdout=log, stderr=subprocess.STDOUT
        )


def test_kill_9_during_pretraining_then_a_rerun_gives_the_uninterrupted_weights(
    tmp_path: Path,
) -> None:
    reference = _run(tmp_path / "reference")
    victim = _run(tmp_path / "killed")
    checkpoint = tmp_path / "killed" / "checkpoints" / "simclr.pt"
    deadline = time.monotonic() + 120
    while not checkpoint.exists():
        assert victim.poll() is None, (tmp_path / "killed" / "log.txt").read_text()[-2000:]
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.005)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=60)
    assert victim.returncode == -signal.SIGKILL
    assert not (tmp_path / "killed" / "trunk.safetensors").exists()  # killed mid-run

    rerun = _run(tmp_path / "killed")
    assert rerun.wait(timeout=180) == 0 and reference.wait(timeout=180) == 0
    log = (tmp_path / "killed" / "log.txt").read_text()
    assert "resuming from" in log and "after epoch" in log
    killed = (tmp_path / "killed" / "trunk.safetensors").read_bytes()
    assert killed == (tmp_path / "reference" / "trunk.safetensors").read_bytes()
    assert not (tmp_path / "killed" / "checkpoints").exists()
    assert [p.name for p in (tmp_path / "killed").iterdir() if p.name.startswith(".")] == []


def test_a_fold_started_from_other_weights_in_the_same_file_is_another_training(
    tmp_path: Path,
) -> None:
    """A new pretraining rewrites the same file: the fold's fingerprint (which decides
    whether a checkpoint is resumed) follows the file's content, not only its name."""
    from brstnet.config import TrainingParams
    from brstnet.st.geometry import PatchGeometry
    from brstnet.training.fold_inputs import fold_fingerprint
    from tests.evaluation.folds import make_fold

    fold_input, patches = make_fold()
    fold_input.uns.update(transform="log1p", zscore=True)
    spec = ModelSpec.for_backbone("test_resnet", n_main=fold_input.n_vars, img_size=8)
    geometry = PatchGeometry(150.0, 8)
    path = tmp_path / "test_resnet_fold0.safetensors"
    cfg = TrainingParams(backbones=["test_resnet"], initial_weights=str(path))

    def fingerprint(content: bytes) -> str:
        path.write_bytes(content)
        return fold_fingerprint(fold_input, patches, spec, geometry, cfg)

    first = fingerprint(b"pretrained once")
    assert fingerprint(b"pretrained again") != first
    assert fingerprint(b"pretrained once") == first


def test_the_probe_is_hest_benchs_pipeline_folded_into_one_linear_map() -> None:
    """Standardise, PCA, ridge with HEST-Bench's fixed penalty and no intercept (its
    train_test_reg), folded into weight and bias on the raw features."""
    from sklearn.decomposition import PCA
    from sklearn.linear_model import Ridge, RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from brstnet.pretraining.probe import fit_linear_probe

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 12)) * rng.uniform(0.1, 5, 12) + 3
    y = x[:, :3] @ rng.normal(size=(3, 4)) + rng.normal(size=(40, 4))
    new = rng.normal(size=(7, 12)) * 2 + 3
    weight, bias, info = fit_linear_probe(x, y, pca_dims=5, ridge="hest")
    hest = make_pipeline(
        StandardScaler(), PCA(n_components=5), Ridge(alpha=100 / (5 * 4), fit_intercept=False)
    ).fit(x, y)
    np.testing.assert_allclose(new @ weight.T + bias, hest.predict(new), rtol=1e-4, atol=1e-4)
    assert info == {"alpha": 5.0, "pca_dims": 5, "ridge": "hest"}
    weight, bias, info = fit_linear_probe(x, y, pca_dims=None, ridge="loo")
    from brstnet.training.probe import ALPHAS

    loo = make_pipeline(StandardScaler(), RidgeCV(alphas=ALPHAS)).fit(x, y)
    np.testing.assert_allclose(new @ weight.T + bias, loo.predict(new), rtol=1e-4, atol=1e-4)
    assert info["pca_dims"] == 12 and info["alpha"] == loo[-1].alpha_
