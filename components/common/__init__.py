"""What only the components share: MLflow tracking, Keras training helpers and summary.json."""
