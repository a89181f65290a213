"""Where a model came from: the code's git commit, its version, the image it ran in.

Every MLflow run, model version and bundle carries these, so a device's model can be traced
back to the code that made it (`edgetune trace`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

from edgetune import __version__, code_version
from edgetune.images import COMPONENT_IMAGE

GIT_SHA_ENV = "EDGETUNE_GIT_SHA"
IMAGE_ENV = "EDGETUNE_IMAGE"
TAG_GIT_COMMIT = "edgetune.git_commit"
TAG_CODE_VERSION = "edgetune.code_version"
TAG_IMAGE = "edgetune.image"
TAG_COMPONENT = "edgetune.component"  # which step a run is ("pipeline": the parent)


@functools.cache
def git_commit() -> str:
    """`git rev-parse HEAD` of the checkout this package runs from, else $EDGETUNE_GIT_SHA.

    An image has no .git, so its build records the commit in the environment instead.
    Returns "" when neither is known.
    """
    try:
        done = subprocess.run(
            ["git", "-C", str(Path(__file__).resolve().parent), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        done = None
    if done is not None and done.returncode == 0 and done.stdout.strip():
        return done.stdout.strip()
    return os.environ.get(GIT_SHA_ENV, "")


def image_tag() -> str:
    """The component image this code runs in: $EDGETUNE_IMAGE, else the declared tag."""
    return os.environ.get(IMAGE_ENV) or COMPONENT_IMAGE


def full_code_version() -> str:
    """The package version plus the commit (from git when $EDGETUNE_GIT_SHA is unset)."""
    sha = git_commit()
    return f"{__version__}+{sha[:12]}" if sha else code_version()


def lineage_tags() -> dict[str, str]:
    """The tags every run and model version carries: git commit, code version, image."""
    return {
        TAG_GIT_COMMIT: git_commit(),
        TAG_CODE_VERSION: full_code_version(),
        TAG_IMAGE: image_tag(),
    }


def step_runs(parent: Any) -> dict[str, Any]:
    """The nested MLflow runs of pipeline run `parent`, by component."""
    import mlflow

    runs = mlflow.MlflowClient().search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'",
    )
    return {r.data.tags.get(TAG_COMPONENT, r.info.run_name): r for r in runs}


def pipeline_params(parent: Any) -> dict[str, str]:
    """A pipeline run's parameters: the steps' own, overlaid by the parent's (the run's)."""
    params = {
        k: v for run in step_runs(parent).values() for k, v in sorted(run.data.params.items())
    }
    params.update(parent.data.params)
    return dict(sorted(params.items()))


def params_sha256(params: dict[str, str]) -> str:
    """A hash of a run's parameters as MLflow holds them: equal hash, equal parameters."""
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()
