"""Compiles the DAG to KFP v2 IR YAML, for a Kubeflow Pipelines cluster."""

from __future__ import annotations

import os
from pathlib import Path

from edgetune import files


def compile_pipeline(out: str | os.PathLike = "pipelines/edgetune_pipeline.yaml") -> Path:
    """Writes the IR YAML (atomically) and returns its path."""
    from kfp import compiler

    from edgetune.pipelines.edgetune_pipeline import edgetune_pipeline

    out = Path(out)
    with files.atomic_path(out) as tmp:
        compiler.Compiler().compile(edgetune_pipeline, str(tmp.with_suffix(".yaml")))
        tmp.with_suffix(".yaml").replace(tmp)
    return out
