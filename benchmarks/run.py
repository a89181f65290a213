"""`make bench`: every benchmark in one process, one JSON results file per run.

    .venv/bin/python -m benchmarks.run [--only compression fanout ...]

Writes benchmarks/results/<UTC timestamp>.json (rewritten after each section, so a failure
keeps what was measured) and exits non-zero when a section failed. `benchmarks.report`
renders the newest results into benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import (
    byom,
    compression,
    data_scale,
    fanout,
    federated,
    fleet_rollout,
    input_pipeline,
    machine,
    pipeline_time,
    pretraining,
    report,
    search,
)
from benchmarks.common import RESULTS_DIR, Progress
from edgetune import files

# Run order: fanout reuses compression's int8 file; the pipeline run goes last, on its own.
SECTIONS = (*(s for s in report.SECTIONS if s != "pipeline_time"), "pipeline_time")
SCHEMA = 1


def _section(name: str, work: Path, done: dict[str, Any]) -> dict[str, Any]:
    target = work / name
    target.mkdir()
    if name == "compression":
        return compression.run(target)
    if name == "input_pipeline":
        return input_pipeline.run(target)
    if name == "fanout":
        shipped = work / "compression" / "tflite" / f"{compression.EDGETUNE}.tflite"
        if "compression" in done and shipped.is_file():
            return fanout.run(target, model=shipped, data_dir=work / "compression" / "data")
        return fanout.run(target)
    if name == "fleet_rollout":
        data = work / "compression" / "data"
        shipped = work / "compression" / "tflite" / f"{compression.EDGETUNE}.tflite"
        if "compression" in done and shipped.is_file():
            return fleet_rollout.run(target, model=shipped, data_dir=data)
        return fleet_rollout.run(target)
    if name == "pretraining":
        return pretraining.compare("default", pretraining.SEEDS)
    if name == "byom":
        return byom.run(target)
    if name == "search":
        return search.run(target)
    if name == "pipeline_time":
        return pipeline_time.run(target)
    if name == "data_scale":
        return data_scale.run(target)
    if name == "federated":
        return federated.run(target)
    raise ValueError(f"unknown section {name!r}; accepted: {', '.join(SECTIONS)}")


def parse_only(values: list[str] | None) -> list[str]:
    """`--only a b` or `--only a,b`; the run order stays SECTIONS' order."""
    if not values:
        return list(SECTIONS)
    wanted = {v.strip() for value in values for v in value.split(",") if v.strip()}
    unknown = sorted(wanted - set(SECTIONS))
    if unknown:
        raise SystemExit(f"--only {', '.join(unknown)}: unknown; accepted: {', '.join(SECTIONS)}")
    return [s for s in SECTIONS if s in wanted]


def run(sections: list[str], results_dir: Path = RESULTS_DIR) -> tuple[Path, dict[str, Any]]:
    """Runs `sections` in order into one results file, rewritten after each; returns it and its doc.

    A section that raises is recorded under `errors` and the next one still runs.
    """
    log = Progress("bench")
    started = datetime.now(UTC)
    out = results_dir / f"{started:%Y%m%dT%H%M%SZ}.json"
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "started_utc": started.isoformat(timespec="seconds"),
        "machine": machine.describe(),
        "sections_run": sections,
        "section_seconds": {},
        "results": {},
        "errors": {},
    }
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        for name in sections:
            log(f"section {name}")
            section_start = time.perf_counter()
            try:
                doc["results"][name] = _section(name, Path(tmp), doc["results"])
            except Exception as e:  # one failed section must not lose the others
                traceback.print_exc()
                first_line = (str(e).strip().splitlines() or [""])[0]
                doc["errors"][name] = f"{type(e).__name__}: {first_line}"
            doc["section_seconds"][name] = time.perf_counter() - section_start
            doc["total_seconds"] = time.perf_counter() - start
            doc["machine"]["load_average_end"] = machine.load_average()
            # Others commit while a run goes on; a change of commit mid-run is worth knowing.
            doc["machine"]["git_commit_end"] = machine.git_commit()
            doc["finished_utc"] = datetime.now(UTC).isoformat(timespec="seconds")
            files.write_json(out, doc)
            log(f"section {name} took {doc['section_seconds'][name]:.0f} s; results in {out}")
    log(f"all done in {doc['total_seconds']:.0f} s")
    return out, doc


def main() -> int:
    """Command line: runs the chosen sections; 1 when one failed, else 0 after naming the file."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", help=f"some of: {', '.join(SECTIONS)}")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    out, doc = run(parse_only(args.only), args.results_dir)
    if doc["errors"]:
        for name, error in doc["errors"].items():
            print(f"bench: section {name} failed: {error}", file=sys.stderr)
        return 1
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
