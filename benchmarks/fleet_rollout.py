"""Fleet rollout: staged push to 1/10/50/200 agents, a 200-agent pull channel, a bad model, agent RSS.

    nice -n 10 .venv/bin/python -m benchmarks.fleet_rollout [--model int8.tflite] [--sizes 1 10 50 200]

- Push: `rollout` with waves 1,10%,50%,100% to the first n agents; the time until 95 % and
  100 % of them serve the new model's sha256 (each device's report arrives with what it
  serves), and the bundle bytes sent.
- Pull: the bundle published to a channel folder that every agent polls (interval 5 s,
  jittered +-50 %); the time from publication until 95 % and 100 % of the status files name
  the new bundle, and what the pull loops read and wrote (channel polls, downloads, status).
- A bad model (every smoke answer shifted, so its smoke test fails on every device): pushed
  with the same waves and max_failure_fraction 0; published with waves 5 % then 100 % after
  60 s, with an operator loop that re-publishes the good model (new sequence) as soon as a
  status file reports the bad one degraded. Counted from the agents' own state (`history`:
  every version a device ever installed): how many devices ever served it.
- RSS of one `edgetune agent serve` process: idle with a model, and its peak (VmHWM) while a
  50 MiB bundle is uploaded, verified and refused (LiteRT cannot load random bytes).

200 agent processes would need ~200 times one agent's RSS, so the fleet runs as agents in
threads: `benchmarks.agent_host` processes, 50 agents each, each agent the real app under its
own uvicorn server, event loop and loopback port (see that module).
"""

from __future__ import annotations

import argparse
import math
import os
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.agent_host import AGENTS_PER_HOST, TOKEN_ENV, Hosts, status_kib
from benchmarks.common import Progress, default_preset, emit, prepared_data
from benchmarks.fanout import untrained_int8
from edgetune import channel, files, litert
from edgetune.agent.local_fleet import start_local_fleet
from edgetune.agent.tokens import write_token
from edgetune.bundle import open_bundle
from edgetune.bundle_build import build_bundle
from edgetune.components.common import training
from edgetune.components.deploy.core import rollout
from edgetune.fleet import FleetDevice, load_fleet
from edgetune.preprocessing import normalize
from edgetune.signing import generate_keypair

SIZES = (1, 10, 50, 200)
PUSH_WAVES = "1,10%,50%,100%"
PULL_INTERVAL_S = 5.0


def ever_served(state_dirs: list[Path], version: str) -> list[str]:
    """The agents (folder names) that ever installed `version`: state.json keeps them all."""
    return [d.name for d in state_dirs if (d / "state.json").exists()
            and version in files.read_json(d / "state.json").get("history", {})]  # fmt: skip


def release_bundle(model: Path, data_dir: Path, key: Path, version: str, out: Path, *,
                   wrong: bool = False, extra_bytes: int = 0) -> Path:  # fmt: skip
    """A signed bundle as deploy builds it (16 smoke samples and their LiteRT answers).

    With `wrong`, every smoke answer is shifted by one class, so its smoke test fails on any
    device (a model that behaves differently there); with `extra_bytes`, a signed member of
    that many random bytes rides along (installed, never read).
    """
    spec = training.load_spec(data_dir)
    with np.load(files.split_file(data_dir, "test")) as test:
        samples = test["x"][:16]
    answers = np.argmax(litert.predict(litert.load(str(model)), normalize(samples, spec)), -1)
    expected = (answers + 1) % len(spec.labels) if wrong else answers
    extra = {"payload.bin": os.urandom(extra_bytes)} if extra_bytes else None
    return build_bundle(out, model, samples, expected, version=version, spec=spec,
                        metrics={"benchmark": True}, mlflow_run_id=None, data_fingerprint=None,
                        private_key=key, extra_files=extra)  # fmt: skip


def _quantiles(times: list[float], n: int) -> dict[str, float | None]:
    """Seconds until 95 % and 100 % of `n` devices got there (None: they never did)."""
    times = sorted(times)

    def at(share: float) -> float | None:
        k = math.ceil(share * n)
        return times[k - 1] if len(times) >= k else None

    return {"seconds_to_95pct": at(0.95), "seconds_to_100pct": at(1.0)}


def push_rollout(
    bundle: Path, devices: list[FleetDevice], key: Path, **waves: Any
) -> dict[str, Any]:
    """One staged push; when each device reported serving the new sha256, and bytes sent."""
    start, served = time.perf_counter(), []
    sha = open_bundle(bundle, key.parent / "signing.pub").model_sha256

    def progress(device: dict[str, Any]) -> None:
        if device.get("served_sha256") == sha and device["status"] in ("deployed", "unchanged"):
            served.append(time.perf_counter() - start)

    report = rollout(bundle, devices, progress=progress, signing_key=key, waves=PUSH_WAVES, **waves)
    seconds = time.perf_counter() - start
    statuses: dict[str, int] = {}
    for d in report.devices:
        statuses[d["status"]] = statuses.get(d["status"], 0) + 1
    return {"agents": len(devices), "seconds": seconds, **_quantiles(served, len(devices)),
            "bytes_sent": sum(d["bytes_sent"] for d in report.devices), "statuses": statuses,
            "waves": [{"wave": w["wave"], "devices": len(w["devices"]), "failures": w["failures"]}
                      for w in report.waves], "stopped": report.stopped}  # fmt: skip


def wait_statuses(uri: Path, n: int, done, since: float, timeout_s: float) -> list[float]:
    """Until `n` status files satisfy `done` (or `timeout_s`): when each was written.

    Seconds after the wall-clock time `since`, from the `time` each device wrote into its
    status (same clock: one machine), so the watcher's own polling adds nothing.
    """
    seen: dict[str, float] = {}
    deadline = time.monotonic() + timeout_s
    while len(seen) < n and time.monotonic() < deadline:
        for status in channel.read_statuses(str(uri)):
            if status.get("device") not in seen and done(status):
                seen[status["device"]] = status["time"] - since
        time.sleep(0.2)
    return sorted(seen.values())


def push_section(work: Path, bundles, sizes, public: Path, private: Path, token: Path, log) -> dict:
    """Staged pushes to each fleet size, then a bad model pushed to the largest."""
    hosts = Hosts(work / "push-agents", max(sizes), public, token)
    log(f"{max(sizes)} agents up in {len(hosts.procs)} host processes; RSS {hosts.rss_mib()} MiB")
    try:
        devices, out = hosts.devices, {"sizes": {}}
        for i, n in enumerate(sizes):
            # Two models in turn: every device of a size serves the other one (or none) before.
            good = bundles(f"push-n{n}", model="ab"[i % 2])
            out["sizes"][str(n)] = result = push_rollout(good, devices[:n], private)
            log(f"push to {n}: {result['seconds']:.2f} s, 95 % at {result['seconds_to_95pct']}, "
                f"{result['statuses']}")  # fmt: skip
        out["host_rss_mib"] = hosts.rss_mib()
        bad = bundles("push-bad", model="ab"[len(sizes) % 2], bad=True)
        result = push_rollout(bad, devices, private, max_failure_fraction=0.0)
        served = ever_served(hosts.state_dirs, "push-bad")
        wave_1 = {d.name for d in devices[: result["waves"][0]["devices"]]}
        result["devices_ever_served_bad"] = len(served)
        result["served_bad_outside_wave_1"] = len(set(served) - wave_1)
        result["wave_1_devices"] = len(wave_1)
        out["bad_model"] = result
        log(f"bad model pushed to {len(devices)}: stopped={result['stopped']}; "
            f"{result['devices_ever_served_bad']} devices ever served it")  # fmt: skip
    finally:
        hosts.stop()
    return out


def pull_section(
    work: Path, bundles, n: int, public: Path, private: Path, token: Path, log
) -> dict:
    """200 agents following a channel folder: a good release, then a bad one halted by an operator."""
    uri = work / "channel"
    hosts = Hosts(work / "pull-agents", n, public, token, uri=uri, interval=PULL_INTERVAL_S)
    log(f"{n} pulling agents up; host RSS {hosts.rss_mib()} MiB")
    try:
        good = bundles("pull-good")
        start = time.time()
        doc = channel.publish(good, str(uri), private)
        times = wait_statuses(uri, n, lambda s: s.get("sha256") == doc["sha256"], start, 300)
        out = {"agents": n, "interval_s": PULL_INTERVAL_S, "bundle_bytes": doc["size"],
               "good": {**_quantiles(times, n), "served": len(times),
                        "publish_seconds": doc["published"] - start}}  # fmt: skip
        log(f"pull good: 95 % at {out['good']['seconds_to_95pct']}, 100 % at "
            f"{out['good']['seconds_to_100pct']}")  # fmt: skip
        out["bad_model"] = _pull_bad(uri, bundles, hosts, n, private, log)
    finally:
        out_traffic = hosts.stop()
    out["traffic"] = out_traffic
    return out


def _pull_bad(uri: Path, bundles, hosts: Hosts, n: int, private: Path, log) -> dict[str, Any]:
    bad = bundles("pull-bad", model="b", bad=True)
    bad_sha = open_bundle(bad, private.parent / "signing.pub").model_sha256
    waves = (channel.Wave(5), channel.Wave(100, 60))
    start = time.time()
    channel.publish(bad, str(uri), private, waves=waves)
    degraded = wait_statuses(
        uri, 1, lambda s: s.get("model_sha256") == bad_sha and s.get("health") == "degraded",
        start, 120,
    )  # fmt: skip
    # The operator's answer: the good model again, signed with a new sequence.
    halt = time.time()
    fixed = channel.publish(bundles("pull-good", resign=True), str(uri), private)
    back = wait_statuses(uri, n, lambda s: s.get("sha256") == fixed["sha256"], halt, 300)
    wave_1 = {d.name for d in hosts.devices if channel.device_bucket(d.name) < waves[0].percent}
    served = ever_served(hosts.state_dirs, "pull-bad")
    result = {"waves": "5 % at once, 100 % after 60 s", "wave_1_devices": len(wave_1),
              "first_degraded_report_seconds": degraded[0] if degraded else None,
              "halted_at_seconds": halt - start, "devices_ever_served_bad": len(served),
              "served_bad_outside_wave_1": len(set(served) - wave_1),
              "all_back_on_good_seconds": (back[-1] if len(back) == n else None)}  # fmt: skip
    log(f"pull bad: halted at {halt - start:.1f} s; {len(served)} devices ever served it "
        f"(wave 1: {len(wave_1)})")  # fmt: skip
    return result


def agent_rss(work: Path, bundles, public: Path, log) -> dict[str, Any]:
    """One `edgetune agent serve` process: RSS idle with a model, peak during a 50 MiB push."""
    fleet = start_local_fleet(1, work / "rss", public)
    pid = fleet.processes[0].pid
    try:
        devices = load_fleet(fleet.fleet_file)
        started = status_kib(pid, "VmRSS")
        rollout(bundles("rss-small"), devices)
        time.sleep(2)
        idle = status_kib(pid, "VmRSS")
        before_peak = status_kib(pid, "VmHWM")
        big = bundles("rss-50mib", model="b", extra=50 << 20)
        report = rollout(big, devices, timeout_s=300)
        time.sleep(2)
        out = {"started_mib": started / 1024, "idle_with_model_mib": idle / 1024,
               "peak_before_upload_mib": before_peak / 1024,
               "peak_during_50mib_upload_mib": status_kib(pid, "VmHWM") / 1024,
               "after_upload_mib": status_kib(pid, "VmRSS") / 1024,
               "upload_bytes": big.stat().st_size, "upload_status": report.devices[0]["status"]}  # fmt: skip
    finally:
        fleet.stop()
    log(f"agent RSS: idle {out['idle_with_model_mib']:.0f} MiB, peak during 50 MiB upload "
        f"{out['peak_during_50mib_upload_mib']:.0f} MiB ({out['upload_status']})")  # fmt: skip
    return out


def run(work: Path, *, model: Path | None = None, data_dir: Path | None = None,
        sizes: tuple[int, ...] = SIZES, pull_agents: int = 200) -> dict[str, Any]:  # fmt: skip
    """Every measurement of the module docstring; returns them as one dict."""
    log = Progress("fleet_rollout")
    if data_dir is None:
        log("ingest + preprocess of the default data (for the spec and smoke samples)")
        data_dir = prepared_data(default_preset(), work)
    source = "the given int8 file, and a second: the zoo backbone with an untrained head"
    if model is None:
        model = untrained_int8(data_dir, work / "untrained_int8.tflite")
        source = (
            "zoo backbone + untrained head, post-training int8 (the shipped architecture), twice"
        )
    # A device already serving a model's sha256 is left unchanged, so releases alternate
    # between two models of the same architecture (another random head).
    models = {"a": model, "b": untrained_int8(data_dir, work / "untrained_int8_b.tflite")}
    private, public = generate_keypair(work / "keys")
    token = write_token(work / "token", secrets.token_urlsafe(32))
    os.environ[TOKEN_ENV] = token.read_text()
    made: dict[str, Path] = {}

    def bundles(version: str, model: str = "a", bad: bool = False, resign: bool = False,
                extra: int = 0) -> Path:  # fmt: skip
        # One bundle per release name; `resign`: the same release with a new sequence.
        if version not in made or resign:
            out = work / "bundles" / f"{version}-{time.time_ns()}.tar"
            made[version] = release_bundle(models[model], data_dir, private, version, out,
                                           wrong=bad, extra_bytes=extra)  # fmt: skip
        return made[version]

    (work / "bundles").mkdir(parents=True, exist_ok=True)
    result = {"model_source": source, "model_bytes": model.stat().st_size,
              "agents_per_host_process": AGENTS_PER_HOST, "push_waves": PUSH_WAVES}  # fmt: skip
    result["agent_rss"] = agent_rss(work, bundles, public, log)
    result["push"] = push_section(work, bundles, sizes, public, private, token, log)
    result["pull"] = pull_section(work, bundles, pull_agents, public, private, token, log)
    result["bundle_bytes"] = made["push-n1"].stat().st_size if "push-n1" in made else None
    log("done")
    return result


def report_lines(r: dict[str, Any]) -> list[str]:
    """The section as Markdown, for benchmarks/report.py."""
    from benchmarks.report import n, s, table

    def statuses(d: dict[str, Any]) -> str:
        return ", ".join(f"{k} {v}" for k, v in d["statuses"].items())

    push, pull, rss = r["push"], r["pull"], r["agent_rss"]
    rows = [[str(d["agents"]), "/".join(str(w["devices"]) for w in d["waves"]),
             s(d["seconds_to_95pct"], 2), s(d["seconds_to_100pct"], 2), s(d["seconds"], 2),
             n(d["bytes_sent"]), statuses(d)] for d in push["sizes"].values()]  # fmt: skip
    bad = push["bad_model"]
    rows.append([f"{bad['agents']}, bad model", "/".join(str(w["devices"]) for w in bad["waves"]),
                 "", "", s(bad["seconds"], 2), n(bad["bytes_sent"]), statuses(bad)])  # fmt: skip
    good, pbad, traffic = pull["good"], pull["bad_model"], pull["traffic"]
    return [
        f"Push, waves `{r['push_waves']}` (cumulative), max_failure_fraction 1 (0 for the bad model):",
        "",
        *table(
            [
                "agents",
                "wave sizes",
                "95 % serve it",
                "100 % serve it",
                "rollout",
                "bundle bytes sent",
                "statuses",
            ],
            rows,
        ),  # fmt: skip
        "",
        f"The bad model (every smoke answer wrong, so the device's smoke test fails) stopped "
        f"the push at: {bad['stopped']}. Devices that ever served it (their own `state.json` "
        f"history): **{bad['devices_ever_served_bad']}** (wave 1: {bad['wave_1_devices']}; "
        f"outside wave 1: {bad['served_bad_outside_wave_1']}).",
        "",
        f"Pull: {pull['agents']} agents polling a channel folder every {pull['interval_s']:g} s "
        f"(jittered ±50 %): 95 % served the new bundle {s(good['seconds_to_95pct'])} after "
        f"publication, 100 % after {s(good['seconds_to_100pct'])} ({good['served']} of "
        f"{pull['agents']}). Over the whole pull run the agents made {n(traffic.get('polls'))} "
        f"polls ({n(traffic.get('channel_bytes'))} bytes of channel.json + signature), "
        f"{n(traffic.get('downloads'))} bundle downloads ({n(traffic.get('download_bytes'))} "
        f"bytes, bundle {n(pull['bundle_bytes'])}) and {n(traffic.get('status_writes'))} status "
        f"writes ({n(traffic.get('status_bytes'))} bytes).",
        "",
        f"Pull, bad model published with waves {pbad['waves']}; the benchmark plays the "
        f"operator and re-publishes the good model (new sequence) at the first `degraded` "
        f"status: first report {s(pbad['first_degraded_report_seconds'])}, halted at "
        f"{s(pbad['halted_at_seconds'])}; devices that ever served it: "
        f"**{pbad['devices_ever_served_bad']}** (wave 1 by device-id hash: "
        f"{pbad['wave_1_devices']}; outside wave 1: {pbad['served_bad_outside_wave_1']}); all back on the good model {s(pbad['all_back_on_good_seconds'])} "
        "after the re-publication.",
        "",
        f"One `edgetune agent serve` process: {rss['started_mib']:.0f} MiB RSS at start, "
        f"{rss['idle_with_model_mib']:.0f} MiB idle serving a model, peak (VmHWM) "
        f"{rss['peak_during_50mib_upload_mib']:.0f} MiB during a {n(rss['upload_bytes'])}-byte "
        f"push ({rss['upload_status']}), {rss['after_upload_mib']:.0f} MiB after it. "
        f"{max(d['agents'] for d in push['sizes'].values())} such processes would need about "
        f"{max(d['agents'] for d in push['sizes'].values()) * rss['idle_with_model_mib'] / 1024:.0f} GiB, "
        f"so the fleet ran as {r['agents_per_host_process']} agents per process "
        "(`benchmarks/agent_host.py`: each agent its own app, state folder, LiteRT interpreter, "
        "uvicorn server, event loop, thread and loopback port; one GIL per 50 agents); host "
        f"process RSS with 50 agents serving a model: {', '.join(f'{m:.0f}' for m in push['host_rss_mib'])} MiB. "
        f"Model: {r['model_source']}, {n(r['model_bytes'])} bytes.",
    ]


def main() -> None:
    """Command line: runs the fleet benchmark in a scratch folder and emits the result."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="an int8 .tflite (default: see fanout)")
    parser.add_argument("--data-dir", type=Path, help="preprocess output (spec, test split)")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--pull-agents", type=int, default=200)
    parser.add_argument("--out", help="also write the JSON result here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        result = run(Path(tmp), model=args.model, data_dir=args.data_dir,
                     sizes=tuple(args.sizes), pull_agents=args.pull_agents)  # fmt: skip
        emit(result, args.out)


if __name__ == "__main__":
    main()
