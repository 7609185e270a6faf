"""Several receiver processes on one listening socket: :func:`run_workers`.

The supervisor (the process that owns the bound socket) forks ``count`` workers; each runs its own
event loop and uvicorn server on the shared socket, and the kernel hands every new connection to
one of them. Nothing is opened before the fork but the socket: each worker builds its own app, pool
and connections. A worker that dies (a crash, the OOM killer, a SIGKILL) is replaced; its
connections are lost, but it never answered 2xx for an event it had not committed, so the senders
retry what it held. SIGTERM or SIGINT to the supervisor stops every worker gracefully (uvicorn
finishes the requests in flight), then SIGKILLs what is left after ``grace_s``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable

_POLL_S = 0.05
_FAST_EXIT_S = 2.0
"""A worker that dies sooner than this after its start counts as failing to start."""
_MAX_FAST_EXITS = 5


def default_workers() -> int:
    """As many workers as the cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def bind_socket(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """A listening TCP socket on ``host:port`` (IPv6 when ``host`` holds a colon)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=backlog)


def _fork_worker(sock: socket.socket, run_worker: Callable[[socket.socket], None]) -> int:
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return pid
    code = 0
    try:  # the child: uvicorn installs its own handlers for these
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        run_worker(sock)
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _signal_all(pids: object, sig: int) -> None:
    for pid in list(pids):  # type: ignore[call-overload]
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def run_workers(
    sock: socket.socket,
    count: int,
    run_worker: Callable[[socket.socket], None],
    grace_s: float = 15.0,
) -> int:
    """Run ``run_worker(sock)`` in ``count`` forked processes until SIGTERM/SIGINT; return an exit
    status (0 after a requested stop, 1 if workers kept dying at start).

    A worker that exits while no stop was asked for is replaced by a new one.
    """
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    started: dict[int, float] = {}
    stop_at: list[float] = []

    def on_signal(signum: int, _frame: object) -> None:
        if not stop_at:
            stop_at.append(time.monotonic())
        _signal_all(started, signal.SIGTERM)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    fast_exits = 0
    status = 0
    try:
        for _ in range(count):
            started[_fork_worker(sock, run_worker)] = time.monotonic()
        while started:
            pid, _ = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                if stop_at and time.monotonic() - stop_at[0] > grace_s:
                    _signal_all(started, signal.SIGKILL)
                time.sleep(_POLL_S)
                continue
            began = started.pop(pid, None)
            if began is None or stop_at:
                continue
            fast_exits = fast_exits + 1 if time.monotonic() - began < _FAST_EXIT_S else 0
            if fast_exits >= _MAX_FAST_EXITS:
                print(f"webhook workers: {fast_exits} workers died at start; stopping", flush=True)
                status = 1
                on_signal(signal.SIGTERM, None)
                continue
            print(f"webhook workers: worker {pid} exited; starting another", flush=True)
            started[_fork_worker(sock, run_worker)] = time.monotonic()
    except ChildProcessError:
        pass
    finally:
        _signal_all(started, signal.SIGKILL)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return status
