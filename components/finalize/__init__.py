"""finalize: the exit handler that writes summary.json and closes the parent MLflow run."""
