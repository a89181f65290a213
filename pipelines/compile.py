"""Compiles the DAG to KFP v2 IR YAML: for a Kubeflow cluster (default) or without its wiring."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from edgetune import files

Target = Literal["cluster", "local"]
TARGETS: tuple[Target, ...] = ("cluster", "local")


def compile_pipeline(
    out: str | os.PathLike = "pipelines/edgetune_pipeline.yaml",
    *,
    target: Target = "cluster",
    cluster_settings: str | os.PathLike | None = None,
) -> Path:
    """Writes the IR YAML (atomically) and returns its path.

    Args:
        out: where to write it.
        target: "cluster" adds the Kubernetes wiring (secrets, config map, resources, retries,
            accelerator; pipelines/cluster.py) as the IR's platform spec; "local" leaves it out.
        cluster_settings: a YAML file overriding the declared cluster settings (cluster only).
    """
    from kfp import compiler

    from edgetune.errors import EdgetuneError
    from edgetune.pipelines.cluster import load_settings
    from edgetune.pipelines.edgetune_pipeline import build_pipeline

    if target not in TARGETS:
        raise EdgetuneError(f"compile target {target!r}; accepted: {', '.join(TARGETS)}")
    if target == "local" and cluster_settings is not None:
        raise EdgetuneError("--cluster settings apply to --target cluster only")
    pipeline = build_pipeline(load_settings(cluster_settings) if target == "cluster" else None)
    out = Path(out)
    with files.atomic_path(out) as tmp:
        compiler.Compiler().compile(pipeline, str(tmp.with_suffix(".yaml")))
        tmp.with_suffix(".yaml").replace(tmp)
    return out
