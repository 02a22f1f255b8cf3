"""Process and file helpers shared by the local Kafka and Postgres bring-up.

Everything here is small and synchronous on purpose: ``agentstream infra status``
must answer instantly and must not import the asyncio client stacks.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import fcntl
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from agentstream.errors import AgentstreamError

Progress = Callable[[str], None]
T = TypeVar("T")


class InfraError(AgentstreamError, RuntimeError):
    """A bring-up step failed; the message says what to look at (usually a log file)."""


def is_root() -> bool:
    """initdb and postgres refuse to run as root, so root must switch user for them."""
    return os.geteuid() == 0


def read_pid(pid_file: Path) -> int | None:
    """The pid recorded in ``pid_file``, or None when the file is missing or garbled."""
    try:
        text = pid_file.read_text().strip()
    except FileNotFoundError:
        return None
    first = text.splitlines()[0] if text else ""
    return int(first) if first.isdigit() else None


def cmdline(pid: int) -> str:
    """The command line of ``pid`` ('' when it is gone), to tell our process from a reused pid."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace")


def pid_alive(pid: int) -> bool:
    """True when ``pid`` exists and is not a zombie (a killed child we have not reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    # The state letter follows the parenthesised command name.
    if stat.rsplit(")", 1)[-1].split()[0] != "Z":
        return True
    # A zombie leader may still have threads running: a JVM's main thread exits first
    # and its other threads (shutdown hooks, the metrics HTTP server) hold its ports
    # for a while longer. Only a zombie with no thread left is gone.
    try:
        return len(os.listdir(f"/proc/{pid}/task")) > 1
    except OSError:
        return False


def live_pid(pid_file: Path, must_contain: str) -> int | None:
    """The pid from ``pid_file`` if that process still runs *and* is the one we started.

    Pids are reused after a reboot or a long uptime, so a bare ``kill -0`` could make
    us think (or stop!) a stranger; the command line must contain ``must_contain``.
    """
    pid = read_pid(pid_file)
    if pid is None or not pid_alive(pid):
        return None
    return pid if must_contain in cmdline(pid) else None


def terminate(pid: int, timeout: float, progress: Progress, what: str) -> None:
    """SIGTERM ``pid``, then SIGKILL it if it has not exited after ``timeout`` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if wait_gone([pid], timeout):
        return
    progress(f"{what} (pid {pid}) did not stop within {timeout:.0f} s; sending SIGKILL")
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    wait_gone([pid], 10.0)


def wait_gone(pids: Sequence[int], timeout: float) -> bool:
    """Wait until none of ``pids`` is alive; False on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        for pid in pids:
            # Reap our own children so they do not linger as zombies.
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)
        if not any(pid_alive(p) for p in pids):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


def port_in_use(host: str, port: int) -> bool:
    """True when something accepts TCP connections on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def tail(path: Path, lines: int = 25) -> str:
    """The last ``lines`` lines of a log file, indented, for error messages."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "    (no log file)"
    return "\n".join("    " + line for line in text.splitlines()[-lines:])


def rotate_log(path: Path) -> None:
    """Keep the previous run's log as ``<name>.1`` so each start begins a fresh file.

    The broker writes its log to stdout, which we redirect to the file; nothing rolls
    it, so rotating at each start bounds it to the life of one process.
    """
    if path.exists():
        path.replace(path.with_name(path.name + ".1"))


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock, so two sessions running ``up`` at once do not both start servers."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def run(
    argv: Sequence[str],
    *,
    as_user: str | None = None,
    timeout: float = 120.0,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run a command to completion, optionally as another user via ``runuser``.

    Output is captured so that a failure can be reported with what the tool said.
    """
    full = ["runuser", "-u", as_user, "--", *argv] if as_user else list(argv)
    try:
        proc = subprocess.run(
            full,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise InfraError(f"timed out after {timeout:.0f} s: {' '.join(full)}") from exc
    except FileNotFoundError as exc:
        raise InfraError(f"command not found: {full[0]}") from exc
    if check and proc.returncode != 0:
        output = (proc.stdout + proc.stderr).strip()
        raise InfraError(f"command failed ({proc.returncode}): {' '.join(full)}\n{output}")
    return proc


def run_sync(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine from sync code, also when the caller already runs an event loop
    (an async pytest fixture): then it runs on a private loop in a worker thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()
