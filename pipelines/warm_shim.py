"""The task interpreter kfp.local starts during a warm local run (see `warm`): a thin client.

Copied into the run's private folder as an executable behind `#!<python> -IS` (no site, so it
starts in milliseconds). It hands its argv, cwd, environment and stdin/stdout/stderr to the
zygote, which forks a child that runs the command; it relays signals to that child and exits
with its status. When the environment differs where an import reads it, or the zygote is
gone, it becomes the real interpreter instead (os.execv): correctness before speed.
Standard library only, and nothing that the zygote's modules define.
"""

import contextlib
import json
import os
import signal
import socket
import sys
import time

READY_TIMEOUT_S = 300.0  # the zygote imports TensorFlow first: minutes on a loaded machine


def main() -> None:
    """Runs this task in a child of the zygote, or as the real interpreter (cold)."""
    home = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(home, "config.json")) as f:
        config = json.load(f)
    conn = None
    mine, zygote = _import_env(config), config["import_env"]
    if differs := sorted(k for k in mine.keys() | zygote.keys() if mine.get(k) != zygote.get(k)):
        sys.stderr.write(f"warm tasks: this one runs cold, {', '.join(differs)} changed\n")
    elif sys.argv[1:2] in (["-m"], ["-c"]):
        conn = _connect(home, config)
    pid = _hand_over(conn) if conn else None
    if pid is None:  # cold path: exactly what kfp.local would have started
        os.execv(config["python"], [config["python"], *sys.argv[1:]])
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda signum, frame: _forward(pid, signum))
    status = conn.makefile("rb").readline().strip()
    code = int(status) if status else 128 + signal.SIGKILL  # the zygote died, and its child
    if code < 0:  # killed by a signal: die by it too, so the shell sees what it would have
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    sys.exit(code)


def _import_env(config: dict) -> dict:
    prefixes, late = tuple(config["import_env_prefixes"]), config["call_time_env"]
    return {k: v for k, v in os.environ.items() if k.startswith(prefixes) and k not in late}


def _sockets(home: str, config: dict) -> list[str]:
    """Where this task may start, best first.

    A task that needs no TensorFlow takes the light zygote (or the heavy one, which has
    everything), the others the heavy one (or the light one, when the heavy one failed).
    """
    argv = sys.argv[1:]
    flag = "--function_to_execute"
    task = argv[argv.index(flag) + 1] if flag in argv[:-1] else ""
    if task in config["light_tasks"]:
        names = ["sock-light", "sock"]
    elif os.path.exists(os.path.join(home, "heavy-failed")):
        names = ["sock-light"]
    else:
        names = ["sock"]
    return [os.path.join(home, n) for n in names]


def _alive(pid: int) -> bool:
    try:  # a dead zygote stays a zombie until local-run reaps it: read its state
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def _connect(home: str, config: dict) -> socket.socket | None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while _alive(config["zygote_pid"]) and time.monotonic() < deadline:
        for path in _sockets(home, config):
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                conn.connect(path)
                return conn
            except (FileNotFoundError, ConnectionRefusedError):  # still importing
                conn.close()
        time.sleep(0.05)
    return None


def _hand_over(conn: socket.socket) -> int | None:
    """Sends the command; returns the child's pid, or None if the zygote did not fork."""
    request = {
        "argv": sys.argv[1:],
        "cwd": os.getcwd(),
        "env": dict(os.environ),
        "sigint_ignored": signal.getsignal(signal.SIGINT) == signal.SIG_IGN,
    }
    payload = json.dumps(request).encode()
    try:
        socket.send_fds(conn, [len(payload).to_bytes(8, "big")], [0, 1, 2])
        conn.sendall(payload)
        line = b""
        while not line.endswith(b"\n"):
            chunk = conn.recv(1)
            if not chunk:
                return None
            line += chunk
    except OSError:
        return None
    return int(line)


def _forward(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


if __name__ == "__main__":
    main()
