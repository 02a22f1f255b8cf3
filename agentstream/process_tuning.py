"""Process-wide runtime choices of a worker: the event loop and the garbage collector.

Both were measured, not guessed (``bench_engine``, 2 vCPU):

* The cyclic garbage collector. A worker holds tens of thousands of live
  session states; CPython's full (generation 2) collection walks every one of
  them, and with the default thresholds (700, 10, 10) it ran often enough to
  dominate a partition replay's CPU time (py-spy; ``bench_engine replay``
  measures it, docs/benchmarks.md) and to stop the whole
  event loop for tens of milliseconds at a time under load. Session states are
  acyclic (frozen dataclasses of tuples and strings) and are freed by reference
  counting alone, so collecting cycles less often costs little memory.
  ``gc.freeze()`` after start-up moves the imported modules, the agent catalog
  and the clients into the permanent generation, where no collection walks them.
* The event loop: uvloop when installed (it is a dependency), which cuts the
  per-call cost of aiokafka's and asyncpg's networking.

Every collection's pause is observed in ``agentstream_gc_pause_seconds`` by
generation, and how late the event loop runs a timer in
``agentstream_event_loop_lag_seconds`` (a busy or blocked loop delays every
Kafka round trip of every partition the worker owns), so a regression shows on
the worker's ``/metrics``. The same watcher measures how busy the loop's thread
is and from that the worker's capacity and headroom (:class:`CapacityMeter`), and
is the heartbeat of :class:`LoopWatch`, which turns ``/livez`` red when the loop
stops running and names, from a thread of its own, the code that holds it.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from prometheus_client import Gauge, Histogram

log = logging.getLogger(__name__)

GC_PAUSE = Histogram(
    "agentstream_gc_pause_seconds",
    "Stop-the-world pauses of CPython's cyclic garbage collector, by generation.",
    ["generation"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)

EVENT_LOOP_LAG = Histogram(
    "agentstream_event_loop_lag_seconds",
    "How much later than asked the worker's event loop woke a sleeping task.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)

BUSY_RATIO = Gauge(
    "agentstream_worker_busy_ratio",
    "Share of the last window the worker's event-loop thread was on a CPU (its thread"
    " CPU time over wall time, 0 to 1). Every Kafka client, decision and call of the"
    " worker runs on that one thread, so it saturates at 1 whatever the machine's"
    " cores; a loop waiting for a CPU other processes hold shows as event-loop lag.",
)
CAPACITY = Gauge(
    "agentstream_worker_capacity_steps_per_second",
    "Steps/s this worker could sustain, estimated from its busy time per step: the"
    " steps of the last window over the loop thread's CPU seconds in it (the steps/s"
    " a fully busy loop would do at the same cost per step). Steps: model and tool"
    " results its engine applied; without an engine, calls its executors finished."
    " Low at light load, where each step costs more CPU than in full batches; kept"
    " from the last window with at least 20 steps.",
)
HEADROOM = Gauge(
    "agentstream_worker_headroom_ratio",
    "Share of the estimated capacity unused: 1 - (steps/s now) /"
    " agentstream_worker_capacity_steps_per_second, which is 1 - the busy ratio of"
    " the event-loop thread. Near 0 the worker cannot take more load.",
)

DEFAULT_GC_THRESHOLD: tuple[int, int, int] = (50_000, 20, 100)
"""Collect generation 0 every 50,000 net allocations (default 700), generation 1
every 20 of those and generation 2 every 100 of generation 1 (CPython 3.11 also
waits until 25 % of the long-lived objects are new). Chosen with bench_engine
replay and overhead; override with ``AGENTSTREAM_GC_THRESHOLD=a,b,c``."""


def gc_threshold_from_env(env: Mapping[str, str]) -> tuple[int, int, int]:
    """``AGENTSTREAM_GC_THRESHOLD`` (three integers, comma-separated) or the default."""
    text = env.get("AGENTSTREAM_GC_THRESHOLD", "").strip()
    if not text:
        return DEFAULT_GC_THRESHOLD
    parts = text.split(",")
    try:
        values = tuple(int(part) for part in parts)
    except ValueError:
        values = ()
    if len(values) != 3 or values[0] < 1 or min(values) < 0:
        raise ValueError(
            f"AGENTSTREAM_GC_THRESHOLD={text!r}: expected three integers a,b,c with a >= 1"
        )
    return values[0], values[1], values[2]


class _PauseTimer:
    """A ``gc.callbacks`` entry that times each collection into :data:`GC_PAUSE`."""

    def __init__(self) -> None:
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            GC_PAUSE.labels(str(info["generation"])).observe(time.perf_counter() - self._started)


_pause_timer = _PauseTimer()


def tune_gc(threshold: tuple[int, int, int]) -> None:
    """Set the collector's thresholds and observe its pauses (once per process)."""
    gc.set_threshold(*threshold)
    if _pause_timer not in gc.callbacks:
        gc.callbacks.append(_pause_timer)


def freeze_startup_objects() -> None:
    """Collect once, then exempt every object alive now from later collections."""
    gc.collect()
    gc.freeze()
    log.info(
        "gc: %d start-up objects frozen, thresholds %s", gc.get_freeze_count(), gc.get_threshold()
    )


class CapacityMeter:
    """Busy ratio, capacity and headroom of the worker over windows of ``window_s``.

    Busy time is the CPU time of the thread that runs the event loop
    (``time.thread_time()``, so :meth:`tick` must run on the loop): CPU spent elsewhere
    (the broker, other workers) does not count against this worker's capacity.
    ``steps`` returns the worker's steps so far (a counter).
    """

    MIN_STEPS = 20
    """Fewer steps in a window say too little about the cost of one."""

    def __init__(self, steps: Callable[[], float], window_s: float = 10.0) -> None:
        self._steps = steps
        self.window_s = window_s
        self._started = time.monotonic()
        self._busy = time.thread_time()
        self._done = steps()

    def tick(self) -> bool:
        """Update the gauges if a window has passed; True when it did."""
        now = time.monotonic()
        wall = now - self._started
        if wall < self.window_s:
            return False
        busy_now, done_now = time.thread_time(), self._steps()
        busy = min(1.0, max(0.0, (busy_now - self._busy) / wall))
        steps = done_now - self._done
        self._started, self._busy, self._done = now, busy_now, done_now
        BUSY_RATIO.set(busy)
        HEADROOM.set(1.0 - busy)
        if steps >= self.MIN_STEPS and busy > 0:
            CAPACITY.set(steps / (busy * wall))
        return True


async def watch_event_loop_lag(
    interval_s: float = 0.25,
    capacity: CapacityMeter | None = None,
    *,
    beats: LoopWatch | None = None,
) -> None:
    """Observe the loop's lag (and ``capacity``) every ``interval_s`` until cancelled,
    and tell ``beats`` each heartbeat."""
    loop = asyncio.get_running_loop()
    while True:
        asked = loop.time()
        await asyncio.sleep(interval_s)
        lag = max(0.0, loop.time() - asked - interval_s)
        EVENT_LOOP_LAG.observe(lag)
        if beats is not None:
            beats.beat(lag)
        if capacity is not None:
            capacity.tick()


DEFAULT_LOOP_BLOCKED_S = 5.0
"""``/livez`` fails once the event loop has not run for this long. Far above a
collector pause or a replay batch's fold (each yields to the loop), far below a
Kafka session timeout (10 s): past it every client of the process is late."""


def loop_blocked_after_from_env(env: Mapping[str, str]) -> float:
    """``AGENTSTREAM_LIVEZ_LOOP_BLOCKED_S`` (seconds, > 0) or the default."""
    text = env.get("AGENTSTREAM_LIVEZ_LOOP_BLOCKED_S", "").strip()
    if not text:
        return DEFAULT_LOOP_BLOCKED_S
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise ValueError(f"AGENTSTREAM_LIVEZ_LOOP_BLOCKED_S={text!r}: expected seconds > 0")
    return value


class LoopWatch:
    """Whether the event loop runs: heartbeats on the loop, a watchdog thread off it.

    :func:`watch_event_loop_lag` calls :meth:`beat` from the loop. A liveness probe
    answered by the loop itself can only answer once the loop runs again, so
    :meth:`problem` reports both a heartbeat overdue now and a last heartbeat that
    came ``blocked_after_s`` late: the probe that waited through a block answers 503
    naming it, and the next one, a heartbeat later, 200. While the loop is blocked
    nothing on it can log, so the watchdog thread (:meth:`start_thread`) logs where
    the loop's thread is stuck, once per block.
    """

    def __init__(self, blocked_after_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.blocked_after_s = blocked_after_s
        self._clock = clock
        self._beat_at: float | None = None
        """Last heartbeat; None before the first (the loop is starting)."""
        self._lag = 0.0
        """How late the last heartbeat came."""
        self._loop_thread: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def beat(self, lag_s: float) -> None:
        """The loop ran a heartbeat ``lag_s`` later than asked."""
        self._beat_at, self._lag = self._clock(), lag_s

    def silent_s(self) -> float:
        """Seconds since the last heartbeat (0 before the first)."""
        return 0.0 if self._beat_at is None else self._clock() - self._beat_at

    def problem(self) -> str | None:
        """Why the loop counts as blocked, or None."""
        if self._beat_at is None:
            return None
        silent = self.silent_s()
        limit = self.blocked_after_s
        if silent >= limit:
            return f"event loop blocked: no heartbeat for {silent:.1f} s (limit {limit:g} s)"
        if self._lag >= limit:
            return (
                f"event loop was blocked for {self._lag:.1f} s until {silent:.1f} s ago"
                f" (limit {limit:g} s)"
            )
        return None

    def start_thread(self, interval_s: float = 0.5) -> None:
        """Start the watchdog thread; call from the loop's thread."""
        self._loop_thread = threading.get_ident()
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._watch, args=(interval_s,), name="loop-watchdog", daemon=True
        )
        self._thread.start()

    def stop_thread(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _watch(self, interval_s: float) -> None:
        blocked = False
        while not self._stop.wait(interval_s):
            silent = self.silent_s()
            overdue = silent >= self.blocked_after_s
            if overdue and not blocked:
                log.error(
                    "event loop blocked: no heartbeat for %.1f s; its thread is in: %s",
                    silent,
                    self.loop_stack(),
                )
            elif blocked and not overdue:
                log.warning("event loop runs again")
            blocked = overdue

    def loop_stack(self, limit: int = 12) -> str:
        """Where the loop's thread is now: innermost frame first, each called from the next."""
        frame = sys._current_frames().get(self._loop_thread or -1)
        frames: list[str] = []
        while frame is not None and len(frames) < limit:
            where = f"{frame.f_code.co_filename.rsplit('/', 1)[-1]}:{frame.f_lineno}"
            frames.append(f"{frame.f_code.co_name} ({where})")
            frame = frame.f_back
        return " <- ".join(frames) if frames else "(unknown)"


def install_event_loop_policy(env: Mapping[str, str]) -> str:
    """Use uvloop's event loop for loops created from now on, unless
    ``AGENTSTREAM_EVENT_LOOP=asyncio`` (kept for comparing the two)."""
    choice = env.get("AGENTSTREAM_EVENT_LOOP", "uvloop").strip() or "uvloop"
    if choice not in ("uvloop", "asyncio"):
        raise ValueError(f"AGENTSTREAM_EVENT_LOOP={choice!r}: expected uvloop or asyncio")
    if choice == "asyncio":
        return "asyncio"
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"
