"""The zygotes of a warm local run (see `warm`): import once, then fork one child per task.

`python -m edgetune.pipelines.warm_server HOME PARENT_PID [MODULE...]`. It serves the tasks
that need no TensorFlow on HOME/sock-light, and forks a second zygote that imports TensorFlow
and serves the rest on HOME/sock (with MODULEs: one zygote, HOME/sock). Each serves until
SIGTERM or until its parent is gone (local-run was SIGKILLed; the second zygote's parent is
the first); then it stops its running children (which also die with it:
PR_SET_PDEATHSIG) and exits. A child
becomes the task: the shim's stdio, cwd and environment, Python's default signal handlers,
then the command run as `python -m MODULE` or `python -c CODE` would run it.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import gc
import json
import os
import runpy
import select
import shutil
import signal
import socket
import sys
import threading
import time
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from edgetune.pipelines import warm

PR_SET_PDEATHSIG = 1
PARENT_CHECK_S = 0.5
_libc = ctypes.CDLL(None, use_errno=True)  # resolved before any fork


@dataclass
class Task:
    """One task's request, as the shim sent it; `conn` carries the pid and status back."""

    argv: list[str]
    cwd: str
    env: dict[str, str]
    sigint_ignored: bool
    fds: list[int]
    conn: socket.socket


@dataclass
class Server:
    """The zygote's state: its socket, its parent, its running children (pid: shim)."""

    listener: socket.socket
    parent_pid: int
    children: dict[int, socket.socket] = field(default_factory=dict)
    stopping: bool = False


def receive(conn: socket.socket) -> Task:
    """Reads one request: its size and the shim's three fds, then the JSON itself."""
    conn.settimeout(10.0)
    header, fds, _, _ = socket.recv_fds(conn, 8, 3)
    size = int.from_bytes(header, "big")
    payload = b""
    while len(payload) < size:
        chunk = conn.recv(size - len(payload))
        if not chunk:
            raise ConnectionError("the shim went away")
        payload += chunk
    conn.settimeout(None)
    return Task(**json.loads(payload), fds=fds, conn=conn)


def serve(server: Server, wake: int) -> Task | None:
    """Runs the zygote's loop; returns in a forked child (its task), or None when stopping."""
    while not server.stopping and os.getppid() == server.parent_pid:
        ready, _, _ = select.select([server.listener, wake], [], [], PARENT_CHECK_S)
        with contextlib.suppress(BlockingIOError):
            os.read(wake, 4096)  # drains the SIGCHLD/SIGTERM wake-ups
        if server.listener in ready:
            conn, _ = server.listener.accept()
            try:
                task = receive(conn)
            except (OSError, ValueError) as e:  # a shim that failed: it runs cold
                sys.stderr.write(f"bad request: {e}\n")
                conn.close()
                continue
            sys.stdout.flush()  # nothing of the zygote's may reach a task's output
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                return task
            for fd in task.fds:
                os.close(fd)
            server.children[pid] = conn
            with contextlib.suppress(OSError):
                conn.sendall(f"{pid}\n".encode())
        reap(server)
    return None


def reap(server: Server) -> None:
    """Collects finished children and sends each shim its child's exit status."""
    while server.children:
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            return
        conn = server.children.pop(pid, None)
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.sendall(f"{os.waitstatus_to_exitcode(status)}\n".encode())
            conn.close()


def stop_children(server: Server, timeout_s: float = 5.0) -> None:
    """SIGTERM to the running children, SIGKILL to those still running after `timeout_s`."""
    for pid in server.children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while server.children and time.monotonic() < deadline:
        reap(server)
        time.sleep(0.05)
    for pid in list(server.children):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    while server.children:
        reap(server)
        time.sleep(0.01)


def become(task: Task, server: Server, wake: int) -> None:
    """In the forked child: takes on the task's process state, as a fresh interpreter has it."""
    signal.set_wakeup_fd(-1)
    os.close(wake)
    server.listener.close()
    for conn in server.children.values():  # the other tasks' shims
        conn.close()
    task.conn.close()
    if _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL) != 0 or os.getppid() == 1:
        os._exit(128 + signal.SIGKILL)  # the zygote is already gone
    for target, fd in enumerate(task.fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(task.cwd)
    os.environ.clear()
    os.environ.update(task.env)
    sigint = signal.SIG_IGN if task.sigint_ignored else signal.default_int_handler
    signal.signal(signal.SIGINT, sigint)
    for sig in (signal.SIGTERM, signal.SIGCHLD, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)


def run(argv: list[str]) -> None:
    """Runs `-m MODULE ARGS...` or `-c CODE ARGS...` in this process, as __main__."""
    option, target, *rest = argv
    if option == "-m":
        sys.argv = [target, *rest]  # run_module puts the module's file in sys.argv[0]
        sys.path[0] = os.getcwd()
        runpy.run_module(target, run_name="__main__", alter_sys=True)
    else:
        sys.argv = ["-c", *rest]
        sys.path[0] = ""
        main = types.ModuleType("__main__")
        sys.modules["__main__"] = main
        exec(compile(target, "<string>", "exec"), main.__dict__)


def finish(argv: list[str]) -> NoReturn:
    """Runs the task, then exits as the interpreter does, minus the teardown of its modules.

    Like Py_FinalizeEx: waits for the task's non-daemon threads, runs its atexit functions
    (MLflow's, weakref finalizers), flushes stdio. Tearing down thousands of modules then
    takes seconds (TensorFlow's); nothing of the task's is left to it, so this skips it.
    """
    try:
        run(argv)
        code = 0
    except SystemExit as e:
        code = _exit_code(e.code)
    except KeyboardInterrupt:
        sys.excepthook(*sys.exc_info())
        code = -signal.SIGINT  # Python's own exit for it: die by SIGINT
    except BaseException:
        sys.excepthook(*sys.exc_info())
        code = 1
    threading._shutdown()  # what the interpreter's exit calls first: joins the threads
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    if code < 0:
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    os._exit(code)


def _exit_code(code: object) -> int:
    """The status `sys.exit(code)` gives (a non-int is printed, then 1)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    with contextlib.suppress(Exception):
        sys.stderr.write(f"{code}\n")
    return 1


def main(home: Path, parent_pid: int, modules: tuple[str, ...] = ()) -> int:
    """Preloads and serves; in a forked child, runs that child's task instead.

    With `modules`, one zygote imports them and serves every task on home/sock. Without, two
    stages: this process imports the light modules (`warm.preload()`), forks the heavy zygote,
    which imports TensorFlow and serves on home/sock (marker `ready`), and itself serves the
    light tasks on home/sock-light (marker `ready-light`) meanwhile.
    """
    warm.preload(modules)
    if problem := warm.fork_safe_problem():
        sys.stderr.write(f"not serving: {problem}\n")
        return 1
    if modules:
        return serve_on(home, "sock", "ready", parent_pid)
    heavy = os.fork()
    if heavy == 0:  # the heavy zygote: dies with the light one, which is its parent
        light = os.getppid()
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        try:
            warm.preload(warm.HEAVY_PRELOAD)
        except BaseException as e:  # the shims then take the light zygote for every task
            (home / "heavy-failed").write_text(f"{type(e).__name__}: {e}\n")
            os._exit(1)
        if problem := warm.fork_safe_problem():
            (home / "heavy-failed").write_text(f"not serving: {problem}\n")
            os._exit(1)
        return serve_on(home, "sock", "ready", light, cleanup=False)
    return serve_on(home, "sock-light", "ready-light", parent_pid, siblings=[heavy])


def serve_on(
    home: Path,
    name: str,
    marker: str,
    parent_pid: int,
    *,
    siblings: list[int] | None = None,
    cleanup: bool = True,
) -> int:
    """Serves tasks on home/name until told to stop or orphaned; stops `siblings` then."""
    # The imports' objects to the permanent generation: a child's garbage collections then
    # skip them instead of writing to (and so copying) every page the zygote shares with it.
    gc.collect()
    gc.freeze()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # local-run decides; Ctrl-C reaches tasks
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(home / name))
    listener.listen(16)
    server = Server(listener, parent_pid)
    read, write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(write)

    def stop(signum: int, frame: object) -> None:
        server.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # wakes select via the pipe
    (home / marker).touch()
    task = serve(server, read)
    if task is None:
        for pid in siblings or ():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        stop_children(server)
        for pid in siblings or ():
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        listener.close()
        if cleanup:  # when local-run was killed, nobody else will
            shutil.rmtree(home, ignore_errors=True)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)  # TensorFlow's interpreter teardown would take seconds, for nothing
    os.close(write)
    become(task, server, read)
    return finish(task.argv)


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), int(sys.argv[2]), tuple(sys.argv[3:])))
