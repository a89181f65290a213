"""local-run's tracking server: MLflow's app on loopback over the run's SQLite store."""

from __future__ import annotations

import os
import socket

import mlflow
import pytest

from edgetune.components.common import tracking
from edgetune.pipelines import tracking_server


def test_runs_logged_through_the_server_are_in_the_store_and_it_stops(tmp_path):
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment_id = tracking.use_experiment(store, "edgetune")  # local-run makes it first
    before = (mlflow.get_tracking_uri(), os.environ.get("MLFLOW_REGISTRY_URI"))
    with tracking_server.serve(store) as url:
        # Serving leaves this process's client (and the tasks it starts) where they were.
        assert (mlflow.get_tracking_uri(), os.environ.get("MLFLOW_REGISTRY_URI")) == before
        assert url.startswith("http://127.0.0.1:")
        client = mlflow.MlflowClient(url)
        run = client.create_run(experiment_id, run_name="through-the-server")
        client.log_metric(run.info.run_id, "accuracy", 0.99)
        client.log_text(run.info.run_id, "beside the database", "note.txt")  # not proxied
    stored = mlflow.MlflowClient(store).get_run(run.info.run_id)
    assert stored.data.metrics == {"accuracy": 0.99}
    assert (tmp_path / "mlruns").is_dir() and stored.info.artifact_uri.startswith(
        (tmp_path / "mlruns").as_uri()
    )
    with pytest.raises(ConnectionRefusedError):  # nothing listens any more
        socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=5)


def test_only_a_sqlite_store_is_served_by_the_local_run():
    assert tracking_server.serves_locally("sqlite:////tmp/x.db")
    assert not tracking_server.serves_locally("http://mlflow.example:5000")
