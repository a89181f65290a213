"""The cluster wiring in the compiled IR, parsed with KFP's own protobufs: secrets, config map,
run context from the pod, resources, accelerator, retries and caching; and the local target."""

from pathlib import Path

import pytest
import yaml
from google.protobuf import json_format
from kfp.kubernetes import kubernetes_executor_config_pb2 as k8s
from kfp.pipeline_spec import pipeline_spec_pb2

from edgetune.errors import EdgetuneError
from edgetune.pipelines import cluster
from edgetune.pipelines.compile import compile_pipeline

RUN_IDENTITY = {"run_name", "pipeline_run_id", "tracking_uri", "experiment"}
CACHED = {s.replace("_", "-") for s in cluster.CACHED_STEPS}


def _parse(
    path: Path,
) -> tuple[pipeline_spec_pb2.PipelineSpec, pipeline_spec_pb2.PlatformSpec | None]:
    docs = list(yaml.safe_load_all(path.read_text()))
    spec = json_format.ParseDict(
        docs[0], pipeline_spec_pb2.PipelineSpec()
    )  # strict: unknown fields fail
    platform = None
    if len(docs) > 1:
        platform = json_format.ParseDict(docs[1], pipeline_spec_pb2.PlatformSpec())
    return spec, platform


def _tasks(spec: pipeline_spec_pb2.PipelineSpec) -> dict[str, pipeline_spec_pb2.PipelineTaskSpec]:
    """Every task that runs a container, in the root DAG and its sub-DAGs."""
    found = dict(spec.root.dag.tasks)
    for component in spec.components.values():
        if component.HasField("dag"):
            found.update(component.dag.tasks)
    return {n: t for n, t in found.items() if spec.components[t.component_ref.name].executor_label}


def _executor_of(
    spec: pipeline_spec_pb2.PipelineSpec, task: pipeline_spec_pb2.PipelineTaskSpec
) -> str:
    return spec.components[task.component_ref.name].executor_label


def _k8s_configs(
    platform: pipeline_spec_pb2.PlatformSpec,
) -> dict[str, k8s.KubernetesExecutorConfig]:
    executors = platform.platforms["kubernetes"].deployment_spec.executors
    out = {}
    for label, config in executors.items():
        out[label] = json_format.ParseDict(  # strict: a field KFP does not know fails
            json_format.MessageToDict(config), k8s.KubernetesExecutorConfig()
        )
    return out


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory):
    out = compile_pipeline(tmp_path_factory.mktemp("ir") / "edgetune.yaml")
    spec, platform = _parse(out)
    assert platform is not None
    return spec, _k8s_configs(platform)


def test_every_task_gets_run_context_and_mlflow_from_the_pod_not_as_inputs(compiled) -> None:
    spec, configs = compiled
    for name, task in _tasks(spec).items():
        config = configs[_executor_of(spec, task)]
        fields = {f.name: f.field_path for f in config.field_path_as_env}
        assert fields[cluster.ENV_PIPELINE_RUN_ID] == "metadata.labels['pipeline/runid']", name
        assert cluster.ENV_RUN_NAME in fields, name
        required = [s for s in config.secret_as_env if not s.optional]
        assert [(k.secret_key, k.env_var) for s in required for k in s.key_to_env] == [
            ("tracking_uri", "MLFLOW_TRACKING_URI")
        ], name
        assert {s.secret_name for s in config.secret_as_env} == {"edgetune-mlflow"}
        container = spec.deployment_spec["executors"][_executor_of(spec, task)]["container"]
        assert {e["name"]: e["value"] for e in container["env"]}[
            cluster.ENV_EXPERIMENT
        ] == "edgetune"
        if name in CACHED:  # the identity would change every run's cache key
            assert not RUN_IDENTITY & set(task.inputs.parameters), name


def test_secrets_and_config_map_are_mounted_where_the_parameters_point(compiled) -> None:
    spec, configs = compiled
    tasks = _tasks(spec)
    deploy = configs[_executor_of(spec, tasks["deploy"])]
    assert {(v.secret_name, v.mount_path) for v in deploy.secret_as_volume} == {
        ("edgetune-signing-key", cluster.SIGNING_MOUNT),
        ("edgetune-agent-tokens", cluster.TOKENS_MOUNT),
    }
    for step in ("deploy", "select-model"):
        config = configs[_executor_of(spec, tasks[step])]
        assert [(c.config_map_name, c.mount_path) for c in config.config_map_as_volume] == [
            ("edgetune-config", cluster.CONFIG_MOUNT)
        ]
    fine_tune = configs[_executor_of(spec, tasks["fine-tune"])]
    assert not fine_tune.secret_as_volume  # the signing key reaches deploy only


def test_resources_retries_and_caching_per_task(compiled) -> None:
    spec, _ = compiled
    for name, task in _tasks(spec).items():
        container = spec.deployment_spec["executors"][_executor_of(spec, task)]["container"]
        resources = container["resources"]
        heavy = name in ("fine-tune", "candidate", "convert")
        assert resources["resourceCpuRequest"] == ("2" if heavy else "500m"), name
        assert resources["resourceMemoryLimit"] == ("8G" if heavy else "4G"), name
        assert "accelerator" not in resources  # none unless asked for
        assert task.caching_options.enable_cache == (name in CACHED), name
        retries = {"ingest": 3, "deploy": 2}.get(name, 0)
        assert task.retry_policy.max_retry_count == retries, name
        if retries:
            assert task.retry_policy.backoff_duration.seconds == 30


def test_candidates_are_a_parallel_loop_collected_into_choose(compiled) -> None:
    spec, _ = compiled
    outer = {**spec.root.dag.tasks}
    for component in spec.components.values():
        if component.HasField("dag"):
            outer.update(component.dag.tasks)
    ((loop_name, loop),) = [(n, t) for n, t in outer.items() if t.HasField("parameter_iterator")]
    assert loop.task_info.name == "candidates"
    assert loop.parameter_iterator.items.input_parameter.endswith("search-space-Output")
    body = spec.components[loop.component_ref.name].dag
    assert "candidate" in body.tasks  # one branch per item
    (selector,) = [s for out in body.outputs.artifacts.values() for s in out.artifact_selectors]
    assert (selector.producer_subtask, selector.output_artifact_key) == ("candidate", "model")
    collected = outer["choose"].inputs.artifacts["candidates"].task_output_artifact
    assert collected.producer_task == loop_name


def test_cached_steps_take_the_code_version_and_ingest_the_data_version(compiled) -> None:
    spec, _ = compiled
    tasks = _tasks(spec)
    for name in CACHED:
        source = tasks[name].inputs.parameters["code_version"].component_input_parameter
        assert source.endswith("code_version"), name  # `pipelinechannel--` inside a sub-DAG
    data = tasks["ingest"].inputs.parameters["data_version"].component_input_parameter
    assert data.endswith("data_version")


def test_settings_file_sets_resources_accelerator_and_retries(tmp_path: Path) -> None:
    settings = tmp_path / "cluster.yaml"
    settings.write_text(
        yaml.safe_dump(
            {
                "resources": {
                    "fine_tune": {"cpu_request": "3"},
                    "default": {"memory_limit": "2Gi"},
                },
                "accelerator": {"type": "nvidia.com/gpu", "count": 2},
                "retries": {"deploy": 0, "evaluate": 1},
                "mlflow_secret": "team-mlflow",
            }
        )
    )
    out = compile_pipeline(tmp_path / "ir.yaml", cluster_settings=settings)
    spec, platform = _parse(out)
    tasks = _tasks(spec)
    executors = spec.deployment_spec["executors"]

    def resources(step: str) -> dict:
        return executors[_executor_of(spec, tasks[step])]["container"]["resources"]

    assert resources("fine-tune")["resourceCpuRequest"] == "3"
    assert resources("fine-tune")["resourceMemoryLimit"] == "8G"  # the step's other defaults kept
    assert resources("ingest")["resourceMemoryLimit"] == "2Gi"
    for step in ("fine-tune", "candidate"):
        accelerator = resources(step)["accelerator"]
        assert (accelerator["resourceType"], accelerator["resourceCount"]) == (
            "nvidia.com/gpu",
            "2",
        )
    assert "accelerator" not in resources("convert")
    assert tasks["deploy"].retry_policy.max_retry_count == 0
    assert tasks["evaluate"].retry_policy.max_retry_count == 1
    assert tasks["ingest"].retry_policy.max_retry_count == 3
    configs = _k8s_configs(platform)
    assert {s.secret_name for c in configs.values() for s in c.secret_as_env} == {"team-mlflow"}


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"resources": {"trainer": {"cpu_request": "1"}}}, "unknown step 'trainer'"),
        ({"resources": {"ingest": {"cpu_request": "lots"}}}, "cpu_request"),
        ({"accelerator": {"type": "nvidia.com/gpu", "count": 0}}, "count"),
        ({"retries": {"ingest": -1}}, "retries"),
        ({"secret": "x"}, "secret"),
    ],
)
def test_bad_settings_are_one_line_errors(tmp_path: Path, doc: dict, message: str) -> None:
    settings = tmp_path / "cluster.yaml"
    settings.write_text(yaml.safe_dump(doc))
    with pytest.raises(EdgetuneError, match=message) as caught:
        cluster.load_settings(settings)
    assert "\n" not in str(caught.value) and str(settings) in str(caught.value)


def test_local_target_is_the_same_dag_without_platform_config(tmp_path: Path, compiled) -> None:
    spec, _ = compiled
    local_spec, platform = _parse(compile_pipeline(tmp_path / "ir.yaml", target="local"))
    assert platform is None
    assert set(_tasks(local_spec)) == set(_tasks(spec))
    for name, task in _tasks(local_spec).items():
        assert task.caching_options.enable_cache == (name in CACHED), name
        assert set(task.inputs.parameters) == set(_tasks(spec)[name].inputs.parameters), name
    with pytest.raises(EdgetuneError, match="cluster only"):
        compile_pipeline(tmp_path / "x.yaml", target="local", cluster_settings=tmp_path / "c.yaml")


def test_kfp_local_runs_a_wired_task_and_its_cache_ignores_the_run_identity(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kfp.local ignores the platform spec and resources, and keys its cache on the inputs
    only: a new run name (in the environment) hits, a new input value misses."""
    from kfp import dsl, local

    @dsl.component(base_image="python:3.11", install_kfp_package=False)
    def who_ran(x: int, out: dsl.Output[dsl.Artifact]):
        import os

        with open(out.path, "w") as f:
            f.write(os.environ.get("EDGETUNE_RUN_NAME", ""))

    @dsl.pipeline
    def tiny(x: int) -> dsl.Artifact:
        task = who_ran(x=x)
        task.set_caching_options(enable_caching=True)
        cluster.wire(task, "ingest", cluster.ClusterSettings())
        return task.outputs["out"]

    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(tmp_path / "root"),
        enable_caching=True,
        cache_root=str(tmp_path / "cache"),
    )

    def run(x: int, name: str) -> str:
        monkeypatch.setenv(cluster.ENV_RUN_NAME, name)
        with pytest.warns(UserWarning, match="no effect in the current local runner"):
            return Path(tiny(x=x).output.path).read_text()

    assert run(1, "first") == "first"
    assert run(1, "second") == "first"  # a cache hit: the output of the first run
    assert run(2, "third") == "third"
