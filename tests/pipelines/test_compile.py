"""The DAG compiles to KFP v2 IR that a cluster accepts: every task, the gate, the exit handler."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from edgetune.images import COMPONENT_IMAGE
from edgetune.pipelines.compile import compile_pipeline
from edgetune.pipelines.params import resolve_preset

NINE = {
    "ingest",
    "select-model",
    "preprocess",
    "fine-tune",
    "search-space",
    "candidate",
    "choose",
    "convert",
    "evaluate",
    "deploy",
}


def _tasks(spec: dict) -> dict[str, dict]:
    """Every task in the root DAG and its sub-DAGs (exit handler, condition)."""
    found = {}
    for dag in [
        spec["root"]["dag"],
        *(c["dag"] for c in spec["components"].values() if "dag" in c),
    ]:
        found.update(dag["tasks"])
    return found


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = compile_pipeline(tmp_path_factory.mktemp("ir") / "edgetune.yaml")
    return next(yaml.safe_load_all(out.read_text()))  # the pipeline spec; then the platform spec


def test_pipeline_compiles_with_nine_components_gate_and_exit_handler(spec: dict) -> None:

    tasks = _tasks(spec)
    assert NINE | {"finalize"} <= set(tasks)
    deploy_trigger = [t for t in tasks.values() if t.get("triggerPolicy", {}).get("condition")]
    assert any("evaluate" in t["triggerPolicy"]["condition"] for t in deploy_trigger)
    assert tasks["finalize"]["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {COMPONENT_IMAGE}
    assert "data_uri" in spec["root"]["inputDefinitions"]["parameters"]


def test_the_compiled_defaults_are_the_default_presets_values(spec: dict) -> None:
    """A run started from the Kubeflow UI without a preset is the default run the README measures."""
    declared = spec["root"]["inputDefinitions"]["parameters"]
    preset = resolve_preset("default")

    assert "defaultValue" not in declared.pop("data_uri")  # the one value a user must give
    assert set(declared) == set(preset) - {"data_uri"}
    for name, parameter in declared.items():
        assert parameter["defaultValue"] == preset[name], name


def test_compile_writes_atomically_and_keeps_old_file_on_failure(
    tmp_path: Path, monkeypatch
) -> None:
    out = tmp_path / "edgetune.yaml"
    out.write_text("previous")
    from kfp import compiler

    def broken(self, *args, **kwargs):
        raise RuntimeError("compiler failed")

    monkeypatch.setattr(compiler.Compiler, "compile", broken)
    with pytest.raises(RuntimeError, match="compiler failed"):
        compile_pipeline(out)
    assert out.read_text() == "previous"
    assert [p.name for p in tmp_path.iterdir()] == ["edgetune.yaml"]


def test_a_component_default_fed_by_a_run_parameter_is_the_declared_default(spec: dict) -> None:
    """A wrapper's own default never tells a different story from the run parameter feeding it."""
    declared = spec["root"]["inputDefinitions"]["parameters"]
    checked = 0
    for task in _tasks(spec).values():
        inputs = spec["components"][task["componentRef"]["name"]].get("inputDefinitions", {})
        defaults = inputs.get("parameters", {})
        for name, source in task.get("inputs", {}).get("parameters", {}).items():
            run_parameter = source.get("componentInputParameter", "")
            run_parameter = run_parameter.removeprefix("pipelinechannel--")
            if run_parameter in declared and "defaultValue" in defaults.get(name, {}):
                assert defaults[name]["defaultValue"] == declared[run_parameter].get(
                    "defaultValue"
                ), f"{task['taskInfo']['name']}.{name} vs run parameter {run_parameter}"
                checked += 1
    assert checked >= 30  # the walk reaches the components inside the exit handler
