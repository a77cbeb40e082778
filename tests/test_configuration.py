"""The run's configuration is the run: the registered namespaces follow --env, KEDRO_ENV
and --params alike, registering reads no data file, and a parameter typo stops the run
before any node, naming the key and its file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from kedro.config import OmegaConfigLoader
from kedro.framework.project import pipelines
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from brstnet.hooks import ProjectHooks
from brstnet.parameter_check import ParameterError, validate_parameters
from brstnet.pipelines import model_training, variants
from brstnet.pipelines.run_parameters import (
    CONFIG_LOADER_ARGS,
    RunParameters,
    project_run_parameters,
)
from brstnet.training.params import Variant
from tests.synthetic import REPO, project_copy


@pytest.fixture
def project(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.delenv("KEDRO_ENV", raising=False)
    root = project_copy(tmp_path / "project")
    monkeypatch.chdir(root)  # kedro-mlflow's tracking store lands in the copy
    yield root
    held = project_run_parameters()  # sessions that ran no pipeline keep theirs
    if held is not None:
        held.use(None)


def _registered(root: Path, pipeline: str = "model_training", **session_args) -> list[str]:
    """Node names of ``pipeline`` as a session with ``session_args`` registers it."""
    bootstrap_project(root)
    with KedroSession.create(project_path=root, **session_args) as session:
        session.load_context()  # runs the project hooks, as `kedro run` does
        return sorted(node.name for node in pipelines[pipeline].nodes)


def test_env_option_and_kedro_env_register_the_same_namespaces(project: Path, monkeypatch) -> None:
    by_option = _registered(project, env="brstnet")
    monkeypatch.setenv("KEDRO_ENV", "brstnet")
    by_variable = _registered(project)
    assert by_option == by_variable
    # BrST-Net's ten backbones x with / without auxiliary x 2 patients (B, C)
    assert len(by_option) == 40 and "vit_base_patch32_aux_fold1.train_model" in by_option
    assert not any(name.startswith("resnet18_") for name in by_option)


def test_default_environment_registers_the_base_grid(project: Path) -> None:
    assert _registered(project) == [f"resnet18_aux_ctx_fold{k}.train_model" for k in (0, 1)]


def test_params_that_change_the_grid_take_effect(project: Path) -> None:
    runtime = {
        "model_training": {"backbones": ["test_resnet", "test_vit"], "aux_weights": [0.5]},
        "feature_selection": {"split": {"scheme": "kfold", "k": 3}},
    }
    names = _registered(project, runtime_params=runtime)
    assert names == [
        f"{b}_aux0p5_ctx_fold{k}.train_model" for b in ("test_resnet", "test_vit") for k in range(3)
    ]
    # evaluation follows the same grid
    evaluation = _registered(project, "evaluation", runtime_params=runtime)
    assert "test_vit_aux0p5_ctx_fold2.predict_held_out" in evaluation
    # and the sections decide the leave-one-patient-out folds
    sections = {"data_processing": {"sections": ["B4", "C2", "E1", "G2"]}}
    assert len(_registered(project, runtime_params=sections)) == 4  # one variant x 4 patients


def test_sessions_in_one_process_each_get_their_own_grid(project: Path) -> None:
    """A notebook or test process: sessions with other parameters, no re-bootstrap, and a
    pipeline built by hand in between, never reuse another configuration's pipelines."""
    bootstrap_project(project)

    def names(**session_args) -> list[str]:
        with KedroSession.create(project_path=project, **session_args) as session:
            session.load_context()
            return sorted(node.namespace for node in pipelines["model_training"].nodes)

    both = {"model_training": {"aux_weights": [1.0, 0.0]}}
    with_and_without = [f"resnet18_{a}_ctx_fold{k}" for a in ("aux", "noaux") for k in (0, 1)]
    assert names(runtime_params=both) == with_and_without
    model_training.create_pipeline()  # built by hand: does not count as registered
    assert names() == ["resnet18_aux_ctx_fold0", "resnet18_aux_ctx_fold1"]
    assert len(names(env="brstnet")) == 40
    assert names(runtime_params=both) == with_and_without


def test_registering_reads_no_data_file(project: Path, tmp_path: Path) -> None:
    """A he2020 run that is to download its data registers before the data exist."""
    runtime = {
        "data_processing": {
            "dataset": "he2020",
            "sections": ["BC23209_C1", "BC23209_C2", "BC23270_D1", "BT23944_E1"],
            "source": {
                "local_dir": str(tmp_path / "not-there"),
                "archive_url": "https://example.org/29ntw7sh4r-5.zip",
            },
            "stain": {"reference_section": None},
        }
    }
    names = _registered(project, runtime_params=runtime)
    assert len(names) == 3  # the default's one variant x three patients
    assert not (tmp_path / "not-there").exists()


def test_guard_stops_a_pipeline_registered_for_other_parameters() -> None:
    pipe = model_training.create_pipeline(
        variants=[Variant("resnet50_aux", "resnet50", 1.0)], n_folds=1
    )
    params = {
        "model_training": {"backbones": ["resnet18"], "aux_weights": [1.0]},
        "data_processing": {"sections": ["B4", "C2"]},
    }
    hooks = ProjectHooks()
    hooks.run_parameters.use(params)
    match = r"not in the parameters: \['resnet50_aux_fold0'\]; missing: \['resnet18_aux_fold0'"
    with pytest.raises(RuntimeError, match=match):
        hooks.before_pipeline_run({}, pipe, None)
    # a run filtered to some namespaces may lack others, never hold foreign ones
    with pytest.raises(RuntimeError, match=r"missing: \[\]"):
        hooks.before_pipeline_run({"namespaces": ["x"]}, pipe, None)
    ok = model_training.create_pipeline(
        variants=[Variant("resnet18_aux", "resnet18", 1.0)], n_folds=2
    )
    hooks.before_pipeline_run({"namespaces": ["resnet18_aux_fold0"]}, ok, None)
    # the run's end takes its parameters back: no guard outside a session
    hooks.after_pipeline_run({}, ok, None)
    assert hooks.run_parameters.session is None
    hooks.before_pipeline_run({}, pipe, None)


def _base_parameters() -> tuple[dict, list[Path]]:
    files = sorted((REPO / "conf/base").glob("parameters_*.yml"))
    params: dict = {}
    for path in files:
        params.update(yaml.safe_load(path.read_text()))
    return params, files


def test_every_shipped_configuration_validates(project: Path) -> None:
    for env, epochs in (("local", 20), ("brstnet", 50)):
        loader = OmegaConfigLoader(str(project / "conf"), **{**CONFIG_LOADER_ARGS, "env": env})
        checked = validate_parameters(loader["parameters"])
        assert checked.model_training.epochs == epochs
        assert checked.data_processing.sections == ["B4", "C2", "C3", "C4", "C5", "C6"]


def test_typo_names_key_file_and_the_valid_keys(tmp_path: Path) -> None:
    params, files = _base_parameters()
    local = tmp_path / "parameters.yml"
    local.write_text("model_training:\n  epoch: 3\n")
    params["model_training"]["epoch"] = 3
    params["evaluation"]["tta_views"] = 8
    params["feature_selection"]["split"]["k"] = 1
    with pytest.raises(ParameterError) as err:
        validate_parameters(params, [*files, local], runtime={"evaluation": {"tta_views": 8}})
    text = str(err.value)
    assert f"unknown parameter model_training.epoch (set in {local}); did you mean epochs?" in text
    assert "unknown parameter evaluation.tta_views (set in --params)" in text
    assert "valid keys: device, batch_size, tta," in text
    assert "parameter feature_selection.split.k (set in " in text
    assert "parameters_feature_selection.yml): Input should be greater than or equal to 2" in text


def test_unknown_backbone_fails_before_the_run(project: Path) -> None:
    with pytest.raises(
        ParameterError, match=r"model_training.backbones .*unknown backbones \['resnet5O'\]"
    ):
        _registered(project, runtime_params={"model_training": {"backbones": ["resnet5O"]}})


def _kedro_run_training(project: Path) -> tuple[int, str]:
    """``kedro run --pipelines=training`` in ``project``: exit code and console output as
    one line (the console wraps)."""
    env = {**os.environ, "DO_NOT_TRACK": "true", "KEDRO_DISABLE_TELEMETRY": "true"}
    done = subprocess.run(
        [Path(sys.executable).parent / "kedro", "run", "--pipelines=training"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return done.returncode, " ".join((done.stdout + done.stderr).split())


def test_kedro_run_with_a_typo_stops_before_any_node(project: Path) -> None:
    (project / "conf/local/parameters.yml").write_text("model_training:\n  epoch: 3\n")
    returncode, out = _kedro_run_training(project)
    assert returncode != 0
    assert "unknown parameter model_training.epoch (set in conf/local/parameters.yml)" in out
    assert "did you mean epochs?" in out
    assert not (project / "data").exists() or not any((project / "data").rglob("*.*"))


def test_a_typo_in_evaluation_parameters_stops_kedro_run_before_data_processing(
    project: Path,
) -> None:
    """Evaluation runs last; its parameters are checked with all the others, at start."""
    (project / "conf/local/parameters.yml").write_text(
        "evaluation:\n  robustness:\n    pixel_size_um: [2.0]\n"
    )
    returncode, out = _kedro_run_training(project)
    assert returncode != 0
    assert (
        "unknown parameter evaluation.robustness.pixel_size_um (set in "
        "conf/local/parameters.yml); did you mean pixel_sizes_um?"
    ) in out
    assert "acquire_raw_data" not in out and "Running node" not in out
    assert not (project / "data").exists() or not any((project / "data").rglob("*.*"))


def test_context_and_smoothed_targets_are_in_every_variants_name() -> None:
    params = {
        "model_training": {
            "backbones": ["resnet18"],
            "aux_weights": [1.0],
            "contexts": [False, True],
        },
        "feature_selection": {"targets": {"smoothing": "neighbours"}},
        "data_processing": {"sections": ["B4", "C2"]},
    }
    grid, folds = variants.variant_grid(params)
    assert [v.name for v in grid] == ["resnet18_aux_smooth", "resnet18_aux_ctx_smooth"]
    assert [v.context for v in grid] == [False, True] and folds == 2
    params["feature_selection"] = {}
    assert [v.name for v in variants.variant_grid(params).variants] == [
        "resnet18_aux",
        "resnet18_aux_ctx",
    ]


def test_the_kedro_glue_imports_without_the_settings_module() -> None:
    """No import cycle through the settings: the registry, the hooks, the runners and the
    command import without brstnet.settings (Kedro alone loads it)."""
    code = (
        "import sys\n"
        "import brstnet.pipeline_registry, brstnet.hooks, brstnet.cli\n"
        "import brstnet.runners.dask_runner, brstnet.runners.hooks\n"
        "print(sorted(m for m in sys.modules if m == 'brstnet.settings'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "DO_NOT_TRACK": "true"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_each_session_hands_its_parameters_to_the_registry_through_its_hooks(
    project: Path,
) -> None:
    bootstrap_project(project)
    held = project_run_parameters()
    assert held is not None and held.session is None
    runtime = {"model_training": {"aux_weights": [0.0]}}
    with KedroSession.create(project_path=project, runtime_params=runtime) as session:
        session.load_context()
        assert held.session["model_training"]["aux_weights"] == [0.0]
        names = sorted(node.namespace for node in pipelines["model_training"].nodes)
    assert names == ["resnet18_noaux_ctx_fold0", "resnet18_noaux_ctx_fold1"]
    # a hook object of its own holds nothing of the session
    assert ProjectHooks().run_parameters.session is None


def test_the_registry_is_reloaded_only_for_other_parameters_than_it_was_built_from() -> None:
    held = RunParameters()
    assert held.use({"model_training": {"epochs": 1}}) is False  # nothing registered yet
    assert held.for_registry() == {"model_training": {"epochs": 1}}
    assert held.use({"model_training": {"epochs": 1}}) is False
    assert held.use({"model_training": {"epochs": 2}}) is True
    assert held.use(None) is False and held.session is None
