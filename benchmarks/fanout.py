"""Deploy fan-out: one signed bundle rolled out to 1, 10 and 50 real agents on loopback.

    .venv/bin/python -m benchmarks.fanout [--model int8.tflite] [--sizes 1 10 50] [--repeats 5]

The agents (`edgetune agent serve` processes) are started once; each fleet size takes the
first n of them. Every rollout ships a fresh version, so no agent holds it yet; the sizes
are interleaved (rotated every repeat) and each is followed at once by a second rollout of
the same version to the same agents, which should send no model bytes (`unchanged`).
Without --model, the int8 file is the zoo backbone with an untrained head, post-training
quantized: the same architecture and file size as the model edgetune ships.
"""

from __future__ import annotations

import argparse
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import ZOO_ID, Progress, default_preset, emit, median, prepared_data, timed
from edgetune import files, litert
from edgetune.agent.local_fleet import start_local_fleet
from edgetune.bundle import build_bundle
from edgetune.components.common import training
from edgetune.components.deploy.core import rollout
from edgetune.errors import EdgetuneError
from edgetune.fleet import load_fleet
from edgetune.preprocessing import normalize
from edgetune.signing import generate_keypair

SIZES = (1, 10, 50)
SMOKE_SAMPLES = 16


def untrained_int8(data_dir: Path, out: Path) -> Path:
    """The zoo backbone with a fresh head, post-training int8: the shipped model's bytes."""
    from edgetune.components.convert.core import to_int8_tflite
    from edgetune.components.fine_tune.core import build_classifier
    from edgetune.zoo.registry import build_backbone, load_zoo

    spec = training.load_spec(data_dir)
    model = build_classifier(build_backbone(load_zoo()[ZOO_ID]), len(spec.labels), 0.2)
    x_train, _ = training.load_split(data_dir, "train")
    return files.write_bytes(out, to_int8_tflite(model, x_train[:200]))


def make_bundle(model: Path, data_dir: Path, key: Path, version: str, out: Path) -> Path:
    """A signed bundle as deploy builds it: the model, 16 smoke samples, their LiteRT answers."""
    spec = training.load_spec(data_dir)
    with np.load(files.split_file(data_dir, "test")) as test:
        samples = test["x"][:SMOKE_SAMPLES]
    expected = np.argmax(litert.predict(litert.load(str(model)), normalize(samples, spec)), -1)
    return build_bundle(
        out,
        model,
        samples,
        expected,
        version=version,
        spec=spec,
        metrics={"benchmark": True},
        mlflow_run_id=None,
        data_fingerprint=None,
        private_key=key,
    )


def start_fleet(n: int, root: Path, public: Path, log: Progress, attempts: int = 3) -> tuple:
    """`start_local_fleet`, retried when an agent loses its port.

    It picks each agent's port before the agent binds it, so on a busy machine another
    process can take the port first (the agent then exits).
    """
    for attempt in range(1, attempts + 1):
        home = root / f"attempt-{attempt}"
        try:
            fleet, seconds = timed(start_local_fleet, n, home, public)
            return fleet, seconds, attempt
        except EdgetuneError as e:
            causes = sorted(
                {
                    line.strip()
                    for log_file in home.glob("*/agent.log")
                    for line in log_file.read_text(errors="replace").splitlines()
                    if "error" in line.lower()
                }
            )
            log(f"attempt {attempt}: {e}; agent log errors: {causes[:2] or 'none'}")
            if attempt == attempts:
                raise
    raise AssertionError("unreachable")


def _summarise(report: Any, seconds: float) -> dict[str, Any]:
    devices = report.devices
    return {
        "seconds": seconds,
        "bytes_sent": sum(d["bytes_sent"] for d in devices),
        "statuses": dict(Counter(d["status"] for d in devices)),
        "device_seconds_median": median([d["seconds"] for d in devices]),
        "device_seconds_max": max(d["seconds"] for d in devices),
        "reasons": sorted({d["reason"] for d in devices if d["status"] == "failed"})[:3],
    }


def run(
    work: Path,
    *,
    model: Path | None = None,
    data_dir: Path | None = None,
    sizes: tuple[int, ...] = SIZES,
    repeats: int = 5,
) -> dict[str, Any]:
    """Rolls one bundle out to every fleet size, `repeats` times interleaved; returns the timings.

    Each rollout is followed by a second one of the same version, which should send no model
    bytes. Without `model`, the int8 file is built from the zoo backbone (see the module).
    """
    log = Progress("fanout")
    if data_dir is None:
        log("ingest + preprocess of the default data (for the spec and smoke samples)")
        data_dir = prepared_data(default_preset(), work)
    source = "the int8 file of compression path (e)"
    if model is None:
        log("no --model: post-training int8 of the zoo backbone with an untrained head")
        model = untrained_int8(data_dir, work / "untrained_int8.tflite")
        source = "zoo backbone + untrained head, post-training int8 (same architecture)"
    private, public = generate_keypair(work / "keys")
    log(f"starting {max(sizes)} agents")
    fleet, start_seconds, attempts = start_fleet(max(sizes), work / "fleet", public, log)
    log(f"{max(sizes)} agents up in {start_seconds:.1f} s (attempt {attempts})")
    try:
        devices = load_fleet(fleet.fleet_file)
        runs: dict[int, list[dict[str, Any]]] = {n: [] for n in sizes}
        bundle_bytes = 0
        for r in range(repeats):
            order = list(sizes[r % len(sizes) :] + sizes[: r % len(sizes)])
            for n in order:
                version = f"bench-n{n}-r{r}"
                bundle = make_bundle(model, data_dir, private, version, work / f"{version}.tar")
                bundle_bytes = bundle.stat().st_size
                first = _summarise(*timed(rollout, bundle, devices[:n]))
                again = _summarise(*timed(rollout, bundle, devices[:n]))
                runs[n].append({"version": version, "first": first, "again": again})
                log(
                    f"{n} agents, {version}: {first['seconds']:.2f} s {first['statuses']}, "
                    f"again {again['seconds']:.2f} s {again['statuses']} "
                    f"({again['bytes_sent']} bytes)"
                )
    finally:
        fleet.stop()
    by_size = {}
    for n, rs in runs.items():
        by_size[str(n)] = {
            "agents": n,
            "rollout_seconds": median([x["first"]["seconds"] for x in rs]),
            "rollout_seconds_all": [round(x["first"]["seconds"], 3) for x in rs],
            "per_agent_seconds": median([x["first"]["seconds"] for x in rs]) / n,
            "device_seconds_median": median([x["first"]["device_seconds_median"] for x in rs]),
            "bytes_sent": median([x["first"]["bytes_sent"] for x in rs]),
            "statuses": rs[-1]["first"]["statuses"],
            "all_deployed": all(x["first"]["statuses"] == {"deployed": n} for x in rs),
            "again_seconds": median([x["again"]["seconds"] for x in rs]),
            "again_bytes_sent": max(x["again"]["bytes_sent"] for x in rs),
            "again_statuses": rs[-1]["again"]["statuses"],
            "again_all_unchanged": all(x["again"]["statuses"] == {"unchanged": n} for x in rs),
            "runs": rs,
        }
    one = by_size[str(min(sizes))]["rollout_seconds"]
    for entry in by_size.values():
        entry["seconds_vs_1"] = entry["rollout_seconds"] / one
    log("done")
    return {
        "model_source": source,
        "model_bytes": model.stat().st_size,
        "bundle_bytes": bundle_bytes,
        "repeats": repeats,
        "max_workers": 16,  # rollout()'s default: devices handled at the same time
        "agents_start_seconds": start_seconds,
        "agents_start_attempts": attempts,
        "sizes": by_size,
    }


def main() -> None:
    """Command line: runs the fan-out benchmark in a scratch folder and emits the result."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="an int8 .tflite (default: see above)")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", help="also write the JSON result here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-fanout-") as tmp:
        result = run(Path(tmp), model=args.model, sizes=tuple(args.sizes), repeats=args.repeats)
        emit(result, args.out)


if __name__ == "__main__":
    main()
