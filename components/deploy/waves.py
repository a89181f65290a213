"""Waves of a staged rollout: which devices go together, and what happens after a wave."""

from __future__ import annotations

import math
import ssl
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

import httpx

from edgetune.components.deploy.device import DEPLOYED, FAILED, UNCHANGED, DeviceRollout
from edgetune.errors import EdgetuneError

Progress = Callable[[dict[str, Any]], None]


def plan_waves(n: int, waves: str) -> list[tuple[int, int]]:
    """Device index ranges [lo, hi) of each wave, from cumulative sizes like "1,10%,100%".

    The last wave always reaches every device; empty waves are dropped.

    Raises:
        EdgetuneError: a size that is not a positive count or a percentage in (0, 100].
    """
    bounds = _bounds(n, waves)
    plan, lo = [], 0
    for hi in [*bounds, n]:
        if hi > lo:
            plan.append((lo, hi))
            lo = hi
    return plan


def wave_problem(waves: str) -> str | None:
    """What is wrong with a `waves` string, or None."""
    for token in (t.strip() for t in waves.split(",")):
        try:
            value = float(token[:-1]) if token.endswith("%") else int(token)
        except ValueError:
            value = 0
        if not (0 < value <= 100 if token.endswith("%") else value >= 1):
            return f"{token!r} is not a count >= 1 or a percentage in (0, 100]"
    return None


def _bounds(n: int, waves: str) -> list[int]:
    problem = wave_problem(waves)
    if problem:
        raise EdgetuneError(f"rollout_waves={waves!r}: {problem}")
    tokens = [t.strip() for t in waves.split(",")]
    return [
        min(n, math.ceil(n * float(t[:-1]) / 100) if t.endswith("%") else int(t)) for t in tokens
    ]


def run_wave(
    runs: Sequence[DeviceRollout],
    results: list[dict[str, Any]],
    lo: int,
    number: int,
    max_workers: int,
    progress: Progress | None,
) -> None:
    """Runs one wave's devices in parallel; their results go to `results[lo:]`."""
    with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(runs)))) as pool:
        futures = {pool.submit(run.run): lo + i for i, run in enumerate(runs)}
        for future in as_completed(futures):
            results[futures[future]] = {**future.result(), "wave": number}
            if progress:
                progress(results[futures[future]])


def recheck(
    runs: Sequence[DeviceRollout],
    results: list[dict[str, Any]],
    lo: int,
    timeout_s: float,
    contexts: dict[str | None, ssl.SSLContext],
) -> None:
    """After the soak: a deployed device that no longer serves the new model `ok` failed."""
    for i, run in enumerate(runs):
        result = results[lo + i]
        if result["status"] != DEPLOYED:
            continue
        try:
            health = httpx.get(f"{run.device.url}/health", timeout=timeout_s,
                               verify=contexts[run.device.ca_file]).json()  # fmt: skip
        except (httpx.HTTPError, ValueError) as e:
            health = {"status": f"unreachable ({e})"}
        if health.get("model_sha256") != run.target.model_sha256 or health.get("status") != "ok":
            result.update(status=FAILED, reason=f"after the soak: serves {health.get('version')} "
                          f"({health.get('status')})")  # fmt: skip


def abort_wave(
    runs: Sequence[DeviceRollout], results: list[dict[str, Any]], lo: int, why: str
) -> None:
    """Rolls back the wave's devices this rollout deployed (a signed order each)."""
    for i, run in enumerate(runs):
        if results[lo + i]["status"] in (DEPLOYED, UNCHANGED) and results[lo + i]["bytes_sent"]:
            results[lo + i].update(run.abort(why))
