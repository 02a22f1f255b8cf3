"""``infra.procs.pid_alive`` must not call a process gone while any of its threads runs:
a JVM's main thread exits before its shutdown hooks and metrics server, which keep the
broker's ports a while longer, and a restart that believed the broker gone failed on
"port 9404 is in use"."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from infra.procs import pid_alive, wait_gone

# The main thread leaves (pthread_exit, as a JVM's does) while another thread sleeps on.
_LEADER_EXITS_FIRST = """
import ctypes, threading, time
threading.Thread(target=lambda: time.sleep({seconds})).start()
ctypes.CDLL(None).pthread_exit(None)
"""


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]


def test_a_zombie_leader_with_a_running_thread_is_alive_until_the_thread_ends() -> None:
    child = subprocess.Popen([sys.executable, "-c", _LEADER_EXITS_FIRST.format(seconds=1.5)])
    try:
        deadline = time.monotonic() + 10
        while _state(child.pid) != "Z":  # wait for the leader to exit
            assert time.monotonic() < deadline, "the main thread never exited"
            time.sleep(0.02)
        assert pid_alive(child.pid)
        assert not wait_gone([child.pid], timeout=0.3)
        assert wait_gone([child.pid], timeout=10)
        assert not pid_alive(child.pid)
    finally:
        child.kill()
        child.wait(10)


def test_a_process_that_exited_is_gone() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    assert wait_gone([child.pid], timeout=10)
    assert not pid_alive(child.pid)
