"""`make federate-local`: the federate pipeline through kfp.local against local agents.

Takes the newest local run (runs/local-*): its signed bundle, which must carry the split
model, and its preprocess output (the test split judges each round). Starts local agents,
installs the bundle on each through deploy's rollout, gives each agent a shifted slice of
the run's training images as the samples it keeps (`pipelines.fleet_sim`), runs the
federate pipeline (three rounds by default, each an MLflow run), prints every round, and
stops the agents.
"""

from __future__ import annotations

import argparse
import io
import json
import warnings
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from edgetune import files
from edgetune.agent.local_fleet import start_local_fleet
from edgetune.bundle import peek_manifest
from edgetune.errors import EdgetuneError
from edgetune.fleet import load_fleet, resolve_token

KEY_DIR = Path(".edgetune/keys")


def newest_run(runs: Path) -> Path:
    """The newest runs/local-* folder that holds a bundle (raises when there is none)."""
    for run in sorted(runs.glob("local-*"), reverse=True):
        if next(run.rglob("bundle-*.tar"), None) is not None:
            return run
    raise EdgetuneError(f"{runs}: no local run with a bundle; run `make local-run` first")


def run_inputs(run: Path) -> tuple[Path, Path]:
    """(the run's bundle, its preprocess output folder).

    A rerun that took preprocess from the cache holds no preprocess output of its own; its
    summary.json names the earlier run that made it (`cached`), which is looked in instead.
    """
    bundle = max(run.rglob("bundle-*.tar"), key=lambda p: p.stat().st_mtime)
    if peek_manifest(bundle).split is None:
        raise EdgetuneError(f"{bundle}: no split model in it; run `make local-run` again")
    summary = run / "summary.json"
    earlier = files.read_json(summary).get("cached", {}) if summary.exists() else {}
    for folder in (run, run.parent / earlier.get("preprocess", run.name)):
        spec = next((p for p in folder.rglob(files.PREPROCESSING_SPEC)
                     if (p.parent / "train.npz").exists() or any(p.parent.glob("train-*"))),
                    None)  # fmt: skip
        if spec is not None:
            return bundle, spec.parent
    raise EdgetuneError(
        f"{run}: no preprocess output with a training split (nor in the run it was cached from)"
    )


def png(pixels: np.ndarray) -> bytes:
    """One uint8 image (H, W, C) as PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(buffer, "PNG")
    return buffer.getvalue()


def give_samples_to(devices: list, slices: list, labels: tuple[str, ...]) -> int:
    """Posts each device its slice (`fleet_sim.DeviceData`); returns the PNG bytes sent in all."""
    sent = 0
    for device, data in zip(devices, slices, strict=True):
        headers = {"Authorization": f"Bearer {resolve_token(device)}", "Content-Type": "image/png"}
        with httpx.Client(timeout=30, headers=headers) as client:
            for pixels, label in zip(data.pixels, data.labels, strict=True):
                body = png(pixels)
                sent += len(body)
                answer = client.post(f"{device.url}/samples", params={"label": labels[label]},
                                     content=body)  # fmt: skip
                if answer.status_code != 201:
                    raise EdgetuneError(
                        f"{device.name}: POST /samples answered {answer.status_code}: {answer.text[:200]}"
                    )
    return sent


def give_samples(fleet_file: Path, data_dir: Path, per_device: int, seed: int) -> list[dict]:
    """Posts each device its shifted slice of the training images; returns what each got."""
    from edgetune.components.common import training
    from edgetune.pipelines.fleet_sim import device_slices

    x, y = training.load_pixels(data_dir, "train")
    devices = load_fleet(fleet_file)
    slices = device_slices(x, y, len(devices), per_device, seed)
    give_samples_to(devices, slices, training.load_spec(data_dir).labels)
    return [
        {"name": d.name, "shift": s.kind, "samples": len(s.labels)}
        for d, s in zip(devices, slices, strict=True)
    ]


def run_pipeline(params: dict, out: Path) -> list[dict]:
    """The federate pipeline through kfp.local; returns rounds.json's content."""
    from kfp import local

    from edgetune.pipelines.federate_pipeline import federate_pipeline

    warnings.filterwarnings("ignore", message=".*non-Python base image.*", category=RuntimeWarning)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(out / "kfp"),
               raise_on_error=True)  # fmt: skip
    federate_pipeline(**params)
    report = max((out / "kfp").rglob("rounds.json"), key=lambda p: p.stat().st_mtime)
    return files.read_json(report)


def main(argv: list[str] | None = None) -> int:
    """Runs the federate pipeline locally; prints one line per round."""
    parser = argparse.ArgumentParser(prog="make federate-local", description=__doc__)
    parser.add_argument("--runs", default="runs", help="where local runs are")
    parser.add_argument("--agents", type=int, default=3)
    parser.add_argument("--samples", type=int, default=100, help="samples each device keeps")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from edgetune.components.deploy.core import rollout
    from edgetune.signing import generate_keypair

    bundle, data_dir = run_inputs(newest_run(Path(args.runs)))
    private, public = generate_keypair(KEY_DIR)
    name = f"federate-local-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    out = Path(args.runs).resolve() / name
    fleet = start_local_fleet(args.agents, out / "agents", public)
    try:
        rollout(bundle, load_fleet(fleet.fleet_file), signing_key=private).check()
        for device in give_samples(fleet.fleet_file, data_dir, args.samples, args.seed):
            print(f"{device['name']}: {device['samples']} samples, shift {device['shift']}")
        params = {"bundle_uri": str(bundle), "data_uri": str(data_dir), "fleet_file": str(fleet.fleet_file),
                  "trusted_key": str(public.resolve()), "signing_key": str(private.resolve()),
                  "run_name": name, "rounds": args.rounds}  # fmt: skip
        for result in run_pipeline(params, out):
            line = {k: result["metrics"].get(k) for k in ("devices_answered", "devices_skipped",
                    "samples", "accuracy_before", "accuracy_after", "rollout_succeeded")}  # fmt: skip
            print(json.dumps({"bundle": Path(result.get("bundle", "")).name or None, **line,
                              "stopped": result["round"]["stopped"]}))  # fmt: skip
    finally:
        fleet.stop()
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except EdgetuneError as e:
        raise SystemExit(f"edgetune: error: {e}") from None
