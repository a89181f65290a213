"""What a local run took from the cache, and the figures those steps left in earlier runs.

kfp.local hands a step's outputs on from an earlier run when its inputs are unchanged; the
step then runs no process and logs no MLflow run, so its share of summary.json (the data
set, the model, the stages, the gate) would be missing. The runner records each cache hit
(the artifacts' folders name the run and the step that made them) and fills those parts
from that step's MLflow run in the earlier pipeline run, naming the run it came from.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgetune.components.common import summary, tracking


@contextlib.contextmanager
def recording_cache_hits() -> Iterator[dict[str, str]]:
    """Within the block, every kfp.local cache hit is recorded as {step: earlier run name}.

    kfp 2.17 has no hook for this: `LocalCache.get` is wrapped for the block's duration only
    (the runner calls it in this process; the tasks run in subprocesses).
    """
    from kfp.local import cache

    hits: dict[str, str] = {}
    original = cache.LocalCache.get

    def get(self: Any, key: str) -> dict[str, Any] | None:
        outputs = original(self, key)
        for value in (outputs or {}).values():
            if origin := _origin(getattr(value, "uri", "")):
                hits[origin[1]] = origin[0]
        return outputs

    cache.LocalCache.get = get
    try:
        yield hits
    finally:
        cache.LocalCache.get = original


def _origin(uri: str) -> tuple[str, str] | None:
    """(run name, step) of an artifact at <runs>/<run>/kfp/<pipeline job>/<task>/<output>.

    kfp names a task folder after its component with dashes (select_model → select-model).
    """
    parts = Path(uri).parts
    if len(parts) < 5 or parts[-4] != "kfp":
        return None
    return parts[-5], parts[-2].replace("-", "_")


def fill_from_earlier_runs(
    result: dict[str, Any], hits: dict[str, str], experiment_id: str
) -> dict[str, Any]:
    """Merges each cached step's summary part from its earlier run into `result`.

    Adds `cached` ({step: earlier run name}); a part that cannot be found is left out.
    """
    import mlflow

    client = mlflow.MlflowClient()
    for step in summary.COMPONENTS:
        run_name = hits.get(step)
        if not run_name or step in (result.get("component_seconds") or {}):
            continue
        parent = tracking.find_parent_run(experiment_id, run_name)
        runs = summary.child_runs(experiment_id, parent.info.run_id) if parent else []
        for run in runs:
            if run.data.tags.get(tracking.TAG_COMPONENT) != step:
                continue
            with tempfile.TemporaryDirectory() as tmp, contextlib.suppress(Exception):
                part = client.download_artifacts(run.info.run_id, tracking.SUMMARY_PART, tmp)
                summary.deep_merge(result, json.loads(Path(part).read_text()))
    result["cached"] = {s: hits[s] for s in summary.COMPONENTS if s in hits}
    return result
