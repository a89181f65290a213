"""summary.json: the components' parts merged in DAG order, with timings and errors."""

from __future__ import annotations

import pytest

from edgetune.components.common import summary, tracking


def test_deep_merge_merges_nested_maps_and_lets_later_scalars_win():
    into = {"stages": {"float": {"accuracy": 0.5}, "qat": {}}, "gate": {"blessed": False}}

    out = summary.deep_merge(
        into, {"stages": {"float": {"accuracy": 0.9, "n": 3}}, "gate": True, "new": [1]}
    )

    assert out is into
    assert into == {
        "stages": {"float": {"accuracy": 0.9, "n": 3}, "qat": {}},
        "gate": True,
        "new": [1],
    }


def log_part(component: str, part: dict | None, run_name: str, tracking_uri: str) -> None:
    with tracking.component_run(
        component, run_name=run_name, pipeline_run_id="job-1", tracking_uri=tracking_uri
    ):
        if part is not None:
            tracking.log_summary_part(part)


def test_build_summary_merges_parts_in_order_and_records_times_and_errors(tracking_uri, run_name):
    log_part(
        "ingest",
        {"dataset": {"n_train": 96, "classes": ["a", "b"]}, "stages": {"float": {"accuracy": 0.1}}},
        run_name,
        tracking_uri,
    )
    log_part("select_model", None, run_name, tracking_uri)  # a component that logs no part
    log_part(
        "evaluate",
        {"stages": {"float": {"accuracy": 0.9}, "tflite_int8": {"size_bytes": 10}}},
        run_name,
        tracking_uri,
    )
    with (
        pytest.raises(RuntimeError),
        tracking.component_run("deploy", run_name=run_name, tracking_uri=tracking_uri),
    ):
        raise RuntimeError("agent unreachable")
    experiment_id = tracking.use_experiment(tracking_uri, tracking.DEFAULT_EXPERIMENT)
    parent = tracking.find_parent_run(experiment_id, run_name)

    result = summary.build_summary(experiment_id, parent, status="FAILED")

    assert set(summary.TOP_KEYS) <= result.keys()
    assert (result["run_id"], result["run_name"], result["status"]) == ("job-1", run_name, "FAILED")
    assert result["mlflow_run_id"] == parent.info.run_id
    assert result["dataset"] == {"n_train": 96, "classes": ["a", "b"]}
    assert result["stages"]["float"] == {"accuracy": 0.9}  # evaluate came later: it wins
    assert result["stages"]["tflite_int8"] == {"size_bytes": 10}
    assert result["stages"]["pruned"] == {}  # every stage is present, filled or not
    assert list(result["component_seconds"]) == ["ingest", "select_model", "evaluate", "deploy"]
    assert all(s >= 0 for s in result["component_seconds"].values())
    assert result["wall_seconds"] >= max(result["component_seconds"].values())
    assert result["errors"] == {"deploy": "RuntimeError: agent unreachable"}


def test_format_table_shows_stages_gate_reasons_deploy_and_errors():
    result = {
        "run_name": "local-1",
        "status": "SUCCEEDED",
        "mlflow_run_id": "abc",
        "wall_seconds": 12.34,
        "dataset": {
            "classes": ["a", "b", "c"],
            "n_train": 9,
            "n_val": 3,
            "n_test": 3,
            "n_quarantined": 1,
            "fingerprint": "0123456789abcdef",
        },  # fmt: skip
        "model": {"zoo_id": "tiny", "params": 12345, "input_shape": [16, 16, 1]},
        "stages": {
            "pruned": {"accuracy": 0.9, "sparsity": 0.5},
            "tflite_int8": {
                "accuracy": 0.875,
                "size_bytes": 33480,
                "gzip_bytes": 14918,
                "latency_ms_p50": 0.1234,
            },  # fmt: skip
        },
        "gate": {"blessed": False, "reasons": ["FAIL: int8 accuracy 87.50% < minimum 95.00%"]},
        "deploy": {},
        "component_seconds": {"ingest": 1.25},
        "errors": {"evaluate": "EdgetuneError: boom"},
    }

    lines = summary.format_table(result).splitlines()

    assert lines[0].split() == ["run", "local-1", "status=SUCCEEDED"]
    table = "\n".join(lines)
    assert "3 classes, train/val/test 9/3/3, quarantined 1, fingerprint 0123456789ab\n" in table
    assert "tiny  12,345 params  input [16, 16, 1]" in table
    assert "accuracy 90.00%, sparsity 50.0%" in table
    assert "accuracy 87.50%, 33,480 B (gzip 14,918 B), p50 0.123 ms" in table
    assert "NOT blessed" in table and "FAIL: int8 accuracy 87.50% < minimum 95.00%" in table
    assert "deploy" not in table  # an empty section is left out
    assert "1.2 s" in table and "EdgetuneError: boom" in table
    # Keys in one column: a reason lines up under the verdict it explains.
    gate = next(i for i, line in enumerate(lines) if "NOT blessed" in line)
    assert lines[gate].index("NOT blessed") == lines[gate + 1].index("FAIL:")
    assert lines[gate].index("NOT blessed") == lines[0].index("local-1")
