"""The pipeline's steps: each a pure core (no kfp, no mlflow) and a thin KFP component wrapper."""
