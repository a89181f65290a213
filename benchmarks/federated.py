"""On-device personalization and federated averaging on a simulated fleet of shifted devices.

    .venv/bin/python -m benchmarks.federated [--devices 10] [--rounds 5] [--out FILE]

The default preset's digits through the real ingest and preprocess; ONE fine_tune of the
zoo backbone (the centrally fine-tuned model), converted post-training to int8 with its
split model (int8 extractor + float32 head), signed into a bundle. Each device gets its own
disjoint slice of the training and validation images, shifted (`pipelines.fleet_sim`:
rotation, thicker or thinner strokes, lower contrast, class imbalance; later devices of a
kind shifted further): up to 100 samples it keeps, and 40 more it is measured on.

1. Personalization (the agent's own code, `Agent.add_sample` + `Agent.personalize`, in
   this process, a fresh state per device and sample count): per device and for 10, 30 and
   100 samples, the trained head's accuracy on the device's 40 measuring images against
   the bundle's head, whether the device's gate installed it, and its held-out figures.
2. Federated rounds over real agent processes (`edgetune agent serve`, loopback), each
   holding its 100 samples, through `run_rounds` (the code `edgetune fleet federate`
   runs): after rounds 1, 3 and 5, the averaged head on the central test split and on each
   device's measuring images, against the central model; bytes each round received from
   the devices against the bytes of the samples that stayed on them. The gate here is
   open (`max_drop_points` 100) so every round's figures are seen; the rounds the default
   gate (1 point) would have refused are marked.
3. One personalization on one thread (100 samples): wall time, the Python/NumPy heap peak
   (tracemalloc), and the agent process's peak RSS (VmHWM) before and after it.
"""

from __future__ import annotations

import argparse
import base64
import os
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks.common import ZOO_ID, Progress, default_preset, emit, prepared_data
from edgetune import files
from edgetune.components.common import training
from edgetune.errors import EdgetuneError
from edgetune.preprocessing import normalize

SAMPLE_COUNTS = (10, 30, 100)
MEASURE = 40  # images per device it is measured on (never given to it)
KEEP = 100


def central_bundle(
    data_dir: Path, work: Path, log: Progress
) -> tuple[Path, Path, Path, dict[str, Any]]:
    """fine_tune once, post-training int8 with its split model, signed.

    Returns:
        (bundle, private key, public key, the central model's figures).
    """
    from edgetune.bundle_build import build_bundle
    from edgetune.components.convert.core import to_int8_tflite
    from edgetune.components.convert.split import split_files, write_split
    from edgetune.components.evaluate.core import split_stage
    from edgetune.components.fine_tune.core import FineTuneConfig, fine_tune
    from edgetune.signing import generate_keypair
    from edgetune.zoo.registry import load_zoo

    preset = default_preset()
    config = FineTuneConfig(head_epochs=preset["head_epochs"], unfreeze_epochs=preset["unfreeze_epochs"],
                            batch_size=preset["batch_size"])  # fmt: skip
    log(f"fine_tune {ZOO_ID} ({config.head_epochs}+{config.unfreeze_epochs} epochs)")
    model, _ = fine_tune(load_zoo()[ZOO_ID], data_dir, config)
    x_train, _ = training.load_split(data_dir, "train")
    out = work / "model"
    files.write_bytes(out / files.TFLITE_MODEL, to_int8_tflite(model, x_train[:200]))
    write_split(model, x_train[:200], out)
    spec = training.load_spec(data_dir)
    x_test, y_test = training.load_split(data_dir, "test")
    from edgetune import litert

    full = np.argmax(litert.predict(litert.load(str(out / files.TFLITE_MODEL)), x_test), -1)
    split_predictions, _ = split_stage(out, x_test, list(spec.labels))
    figures = {"central_int8_accuracy": float(np.mean(full == y_test)),
               "central_split_accuracy": float(np.mean(split_predictions == y_test)),
               "n_test": int(len(y_test))}  # fmt: skip
    private, public = generate_keypair(work / "keys")
    pixels = training.load_pixels(data_dir, "test")[0][:16]
    expected = np.argmax(
        litert.predict(litert.load(str(out / files.TFLITE_MODEL)), normalize(pixels, spec)), -1
    )
    bundle = build_bundle(work / "bundle.tar", out / files.TFLITE_MODEL, pixels, expected, version="1",
                          spec=spec, metrics={}, mlflow_run_id=None, data_fingerprint=None,
                          private_key=private, split=split_files(out))  # fmt: skip
    log(
        f"central model: int8 {figures['central_int8_accuracy']:.2%}, split {figures['central_split_accuracy']:.2%}"
    )
    return bundle, private, public, figures


def device_data(data_dir: Path, n_devices: int) -> list[tuple[Any, Any]]:
    """Per device: (kept slice, measuring slice), both shifted alike, from train + val."""
    from edgetune.pipelines.fleet_sim import DeviceData, device_slices

    xs, ys = zip(*(training.load_pixels(data_dir, s) for s in ("train", "val")), strict=True)
    slices = device_slices(np.concatenate(xs), np.concatenate(ys), n_devices, KEEP + MEASURE)
    return [(DeviceData(d.name, d.kind, d.pixels[:KEEP], d.labels[:KEEP]),
             DeviceData(d.name, d.kind, d.pixels[KEEP:], d.labels[KEEP:])) for d in slices]  # fmt: skip


def measured(agent: Any, head: Any, data: Any) -> float:
    """`head` (None: the bundle's own) with the served extractor on a device's measuring images."""
    model = agent.served_model()
    head = head or model.split.base_head
    return float(np.mean(head.predict(model.embed(data.pixels)) == data.labels))


def personalization(
    bundle: Path, public: Path, devices, labels, work: Path, log: Progress
) -> list[dict]:
    """Section 1: each device and sample count in a fresh agent state, in this process."""
    from edgetune.agent.service import Agent
    from edgetune.pipelines.federate_local import png
    from edgetune.signing import load_public_key
    from edgetune.split import Head

    rows = []
    key = load_public_key(public)
    for keep, measure in devices:
        for n in SAMPLE_COUNTS:
            agent = Agent(work / f"p-{keep.name}-{n}", key)
            agent.install(bundle.read_bytes())
            for pixels, label in zip(keep.pixels[:n], keep.labels[:n], strict=True):
                agent.add_sample(png(pixels), labels[label], 1 << 24)
            row = {
                "device": keep.name,
                "shift": keep.kind,
                "samples": n,
                "before": measured(agent, None, measure),
            }
            try:
                result = agent.personalize()
            except EdgetuneError as e:
                rows.append({**row, "refused": str(e)})
                continue
            update = agent.head_update()
            base = agent.served_model().split.base_head
            delta_k = np.frombuffer(base64.b64decode(update["delta_kernel"]), "<f4").reshape(
                base.kernel.shape
            )
            delta_b = np.frombuffer(base64.b64decode(update["delta_bias"]), "<f4")
            trained = Head(base.kernel + delta_k, base.bias + delta_b)
            rows.append({**row, "after": measured(agent, trained, measure), "installed": result["installed"],
                         "holdout_before": result["before"], "holdout_after": result["after"],
                         "n_holdout": result["n_holdout"], "seconds": result["seconds"]})  # fmt: skip
            log(f"{keep.name} ({keep.kind}) n={n}: {row['before']:.2%} -> {rows[-1]['after']:.2%}")
    return rows


def federation(
    bundle, keys, devices, labels, data_dir, work, rounds, log: Progress
) -> dict[str, Any]:
    """Section 2 and 3: real agents, samples posted, `run_rounds` round by round."""
    from edgetune.agent.local_fleet import start_local_fleet
    from edgetune.bundle import open_bundle
    from edgetune.components.deploy.core import rollout
    from edgetune.components.federate.core import FederateConfig, extractor_embeddings
    from edgetune.components.federate.release import round_of
    from edgetune.components.federate.rounds import run_rounds
    from edgetune.fleet import load_fleet
    from edgetune.pipelines.federate_local import give_samples_to
    from edgetune.split import Head

    private, public = keys
    fleet = start_local_fleet(len(devices), work / "agents", public)
    try:
        fleet_devices = load_fleet(fleet.fleet_file)
        rollout(bundle, fleet_devices, signing_key=private).check()
        raw = give_samples_to(fleet_devices, [keep for keep, _ in devices], labels)
        kept = sum(
            httpx.get(f"{u}/health").json()["personalization"]["samples_bytes"] for u in fleet.urls
        )
        single = one_personalization(fleet, fleet_devices[0], log)
        base, history = open_bundle(bundle, public), []
        measure_x = [(normalize(m.pixels, base.manifest.spec), m.labels) for _, m in devices]
        config = FederateConfig(min_devices=len(devices) // 2, max_drop_points=100.0, timeout_s=120)
        for _ in range(rounds):
            (result,) = run_rounds(bundle, data_dir, fleet.fleet_file, public, str(private),
                                   work / "rounds", config)  # fmt: skip
            report = result["round"]
            if "bundle" not in result:
                history.append({"round": round_of(base) + 1, "stopped": report["stopped"]})
                break
            bundle = Path(result["bundle"])
            base = open_bundle(bundle, public)
            head = Head.from_bytes(base.files[base.manifest.split.head])
            per_device = [
                float(np.mean(head.predict(extractor_embeddings(base, x)) == y))
                for x, y in measure_x
            ]
            history.append({"round": round_of(base), "test_before": report["accuracy_before"],
                            "test_after": report["accuracy_after"],
                            "default_gate_would_refuse": (report["accuracy_before"] - report["accuracy_after"]) * 100 > 1.0,
                            "devices_answered": len(report["updates"]), "skipped": report["skipped"],
                            "bytes_received": result["metrics"]["bytes_received"], "per_device": per_device})  # fmt: skip
            log(
                f"round {history[-1]['round']}: test {report['accuracy_before']:.2%} -> {report['accuracy_after']:.2%}"
            )
        return {
            "raw_png_bytes": raw,
            "stored_sample_bytes": kept,
            "rounds": history,
            "one_personalization": single,
        }
    finally:
        fleet.stop()


def _vm_hwm_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def one_personalization(fleet, device, log: Progress) -> dict[str, Any]:
    """Section 3: one POST /personalize (100 samples) on an agent process; its peak RSS around it."""
    from edgetune.fleet import resolve_token

    pid = fleet.processes[0].pid
    before = _vm_hwm_kb(pid)
    start = time.perf_counter()
    answer = httpx.post(f"{device.url}/personalize", timeout=300,
                        headers={"Authorization": f"Bearer {resolve_token(device)}"})  # fmt: skip
    wall = time.perf_counter() - start
    result = answer.json()
    log(
        f"one personalization: {wall:.2f} s over HTTP, agent peak RSS {before} -> {_vm_hwm_kb(pid)} kB"
    )
    return {"wall_seconds": wall, "agent_seconds": result.get("seconds"), "vm_hwm_kb_before": before,
            "vm_hwm_kb_after": _vm_hwm_kb(pid), "n_train": result.get("n_train"),
            "epochs": result.get("epochs")}  # fmt: skip


def heap_peak(bundle: Path, public: Path, keep: Any, labels, work: Path) -> dict[str, Any]:
    """Section 3, in process: the Python/NumPy heap peak of one personalization (tracemalloc)."""
    from edgetune.agent.service import Agent
    from edgetune.pipelines.federate_local import png
    from edgetune.signing import load_public_key

    agent = Agent(work / "heap", load_public_key(public))
    agent.install(bundle.read_bytes())
    for pixels, label in zip(keep.pixels, keep.labels, strict=True):
        agent.add_sample(png(pixels), labels[label], 1 << 24)
    tracemalloc.start()
    start = time.perf_counter()
    agent.personalize()
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"seconds": seconds, "tracemalloc_peak_bytes": peak, "threads": 1}


def run(work: Path, n_devices: int = 10, rounds: int = 5) -> dict[str, Any]:
    """All three sections; returns their figures."""
    log = Progress("federated")
    data_dir = prepared_data(default_preset(), work)
    bundle, private, public, central = central_bundle(data_dir, work, log)
    labels = training.load_spec(data_dir).labels
    devices = device_data(data_dir, n_devices)
    rows = personalization(bundle, public, devices, labels, work, log)
    heap = heap_peak(bundle, public, devices[0][0], labels, work)
    fed = federation(bundle, (private, public), devices, labels, data_dir, work, rounds, log)
    return {"central": central, "personalization": rows, "federation": fed, "heap": heap,
            "devices": [{"name": k.name, "shift": k.kind} for k, _ in devices]}  # fmt: skip


def main() -> None:
    """Runs the benchmark in a scratch folder and prints (or writes) its JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--devices", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory(prefix="bench-federated-") as tmp:
        emit(run(Path(tmp), args.devices, args.rounds), args.out)


if __name__ == "__main__":
    main()


def report_lines(r: dict[str, Any]) -> list[str]:
    """The section as Markdown for benchmarks/README.md (benchmarks.report calls it)."""

    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{v * 100:.1f}%"

    central = r["central"]
    lines = [f"Central model (fine-tuned once, int8): {pct(central['central_int8_accuracy'])} on "
             f"{central['n_test']} test images; its split model (int8 extractor + float32 head): "
             f"{pct(central['central_split_accuracy'])}.", ""]  # fmt: skip
    header = ["device", "shift"] + [
        f"{n} samples: bundle's head → trained head (gate)" for n in SAMPLE_COUNTS
    ]
    rows: dict[str, list[str]] = {}
    for row in r["personalization"]:
        cells = rows.setdefault(row["device"], [row["device"], row["shift"]])
        if "refused" in row:
            cells.append(f"{pct(row['before'])} → too few samples (422)")
        else:
            gate = "installed" if row["installed"] else "refused"
            cells.append(f"{pct(row['before'])} → {pct(row['after'])} ({gate})")
    lines += [
        "Personalization, each device on its own 40 measuring images (never given to it):",
        "",
    ]
    lines += _table(header, list(rows.values())) + [""]
    fed = r["federation"]
    lines += [
        "Federated rounds (10 agent processes, 100 samples each; central = the bundle's head):",
        "",
    ]
    befores = [row["before"] for row in r["personalization"] if row["samples"] == KEEP]
    start = fed["rounds"][0].get("test_before") if fed["rounds"] else None
    rows2 = [["central (round 0)", pct(start), pct(sum(befores) / len(befores)), "", ""]]
    for h in fed["rounds"]:
        if "stopped" in h:
            rows2.append([f"round {h['round']}", f"stopped: {h['stopped']}", "", "", ""])
            continue
        mean_dev = sum(h["per_device"]) / len(h["per_device"])
        rows2.append([f"round {h['round']}", pct(h["test_after"]), pct(mean_dev),
                      f"{h['bytes_received']:,}", "yes" if h["default_gate_would_refuse"] else "no"])  # fmt: skip
    lines += _table(["after", "central test split", "devices' measuring images (mean)",
                     "bytes from devices", "default gate (1 point) would refuse"], rows2)  # fmt: skip
    lines += ["", f"Raw data that stayed on the devices: {fed['raw_png_bytes']:,} bytes of PNG "
              f"({fed['stored_sample_bytes']:,} bytes as stored samples).", ""]  # fmt: skip
    one, heap = fed["one_personalization"], r["heap"]
    lines += [f"One personalization (100 samples, one thread): {one['agent_seconds']} s in the agent "
              f"({one['wall_seconds']:.2f} s over HTTP), agent peak RSS {one['vm_hwm_kb_before']:,} → "
              f"{one['vm_hwm_kb_after']:,} kB; in process {heap['seconds']:.2f} s, Python/NumPy heap "
              f"peak {heap['tracemalloc_peak_bytes'] / 1e6:.2f} MB (tracemalloc)."]  # fmt: skip
    return lines


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]
