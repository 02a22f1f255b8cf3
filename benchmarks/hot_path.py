"""Where the workers' hot path spent its time, from their own /metrics.

The benchmarks see a step from outside (broker timestamps); the workers' histograms
say which part of it was the engine's transaction, the fetch, or the executor, and
the broker's request counters (its Prometheus JMX exporter) say how many Kafka
requests a step cost. A benchmark marks the workers before its measured run and
prints the difference after it, so warm-up runs do not count.
"""

from __future__ import annotations

import os
import re
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from infra import kafka, local

HISTOGRAMS = {
    "agentstream_engine_inbox_age_seconds": "inbox record age at decide",
    "agentstream_engine_transaction_phase_seconds": "engine transaction",
    "agentstream_engine_batch_records": "inbox records per transaction",
    "agentstream_executor_item_age_seconds": "work item age at start",
    "agentstream_executor_result_send_seconds": "result produce",
    "agentstream_event_loop_lag_seconds": "event loop lag",
}


@dataclass
class Histograms:
    """Cumulative bucket counts per (metric, labels): {upper bound: count}, and sums."""

    buckets: dict[tuple[str, str], dict[float, float]] = field(default_factory=dict)
    sums: dict[tuple[str, str], float] = field(default_factory=dict)

    def minus(self, earlier: Histograms) -> Histograms:
        out = Histograms()
        for key, counts in self.buckets.items():
            before = earlier.buckets.get(key, {})
            out.buckets[key] = {le: n - before.get(le, 0.0) for le, n in counts.items()}
            out.sums[key] = self.sums.get(key, 0.0) - earlier.sums.get(key, 0.0)
        return out


def scrape(ports: Sequence[int]) -> Histograms:
    """The hot-path histograms of the workers on ``ports``, added together."""
    total = Histograms()
    for port in ports:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                text = r.read().decode()
        except OSError:
            continue  # a worker that is gone adds nothing
        for family in text_string_to_metric_families(text):
            if family.name not in HISTOGRAMS:
                continue
            for sample in family.samples:
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()) if k != "le")
                key = (family.name, labels)
                if sample.name.endswith("_bucket"):
                    le = float(sample.labels["le"])
                    counts = total.buckets.setdefault(key, {})
                    counts[le] = counts.get(le, 0.0) + sample.value
                elif sample.name.endswith("_sum"):
                    total.sums[key] = total.sums.get(key, 0.0) + sample.value
    return total


def _quantile(counts: dict[float, float], q: float) -> float:
    """Upper bucket bound at quantile ``q`` (Prometheus-style, no interpolation)."""
    bounds = sorted(counts)
    n = counts[bounds[-1]] if bounds else 0.0
    for le in bounds:
        if counts[le] >= q * n:
            return le
    return float("nan")


def report(histograms: Histograms) -> list[str]:
    """One line per histogram: count, mean, and the p50/p99 bucket bounds."""
    lines = []
    for (name, labels), counts in sorted(histograms.buckets.items()):
        n = counts.get(float("inf"), 0.0)
        if n <= 0:
            continue
        mean = histograms.sums.get((name, labels), 0.0) / n
        seconds = name.endswith("_seconds")
        scale, unit = (1000.0, " ms") if seconds else (1.0, "")
        label = f"{HISTOGRAMS[name]}{' ' + labels if labels else ''}"
        lines.append(
            f"    {label}: n {n:,.0f}, mean {mean * scale:.1f}{unit},"
            f" p50 <= {_quantile(counts, 0.5) * scale:g}{unit},"
            f" p99 <= {_quantile(counts, 0.99) * scale:g}{unit}"
        )
    return lines


# ------------------------------------------------------------ broker requests per step


def broker_requests() -> dict[str, float] | None:
    """Requests the brokers of the running `agentstream infra up` cluster have handled
    so far, by API; None if there is no such cluster or a node does not answer."""
    for size in kafka.SIZES:
        cluster = local.kafka_cluster(size)
        if not cluster.running():
            continue
        total: dict[str, float] = {}
        for node in cluster.nodes:
            counts = node.request_counts()
            if counts is None:
                return None
            for api, n in counts.items():
                total[api] = total.get(api, 0.0) + n
        return total
    return None


def requests_report(
    before: dict[str, float] | None, after: dict[str, float] | None, steps: int, seconds: float
) -> str:
    """The broker's requests per step between two :func:`broker_requests` readings."""
    if before is None or after is None or steps <= 0:
        return "    broker requests: not measured (no broker started by `agentstream infra up`)"
    # FetchConsumer is counted under Fetch as well; Verification is the broker's own call.
    skip = {"Fetch", "AddPartitionsToTxnVerification"}
    delta = {api: n - before.get(api, 0.0) for api, n in after.items() if api not in skip}
    delta = {api: n for api, n in delta.items() if n > 0}
    total = sum(delta.values())
    parts = ", ".join(
        f"{api} {n / steps:.3f}" for api, n in sorted(delta.items(), key=lambda kv: -kv[1])[:8]
    )
    return f"    broker requests per step: {total / steps:.2f} ({total / seconds:,.0f}/s): {parts}"


# ------------------------------------------------------------------ CPU per process


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of ``pid`` so far (Linux /proc); None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _thread_groups(pid: int) -> dict[str, float]:
    """CPU seconds of ``pid``'s threads so far, by thread name with numbers dropped
    ("C2 CompilerThread0" and "C1 CompilerThread1" -> "CN CompilerThread")."""
    groups: dict[str, float] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return groups
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = re.sub(r"\d+", "N", f.read().strip()).rstrip("-_#N ")
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:
            continue
        seconds = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        groups[name] = groups.get(name, 0.0) + seconds
    return groups


def _pids_by_role(worker_pids: Sequence[int]) -> dict[str, list[int]]:
    """The processes sharing the machine in a benchmark: broker, Postgres, workers, us."""
    roles: dict[str, list[int]] = {
        "kafka broker": [],
        "postgres": [],
        "workers": list(worker_pids),
        "load generator": [os.getpid()],
    }
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if b"kafka.Kafka" in cmdline:
            roles["kafka broker"].append(int(entry))
        elif cmdline.startswith(b"postgres") or b"/bin/postgres" in cmdline:
            roles["postgres"].append(int(entry))
    return roles


def broker_cpu_seconds() -> float:
    """CPU seconds used so far by the Kafka brokers running on this machine."""
    return sum(_cpu_seconds(pid) or 0.0 for pid in _pids_by_role([])["kafka broker"])


@dataclass
class CpuSplit:
    """CPU used by each kind of process between ``start`` and ``report``."""

    roles: dict[str, list[int]] = field(default_factory=dict)
    _start: dict[int, float] = field(default_factory=dict)
    _broker_threads: dict[str, float] = field(default_factory=dict)
    _started_at: float = 0.0

    def start(self, worker_pids: Sequence[int]) -> None:
        self.roles = _pids_by_role(worker_pids)
        self._start = {
            pid: cpu
            for pids in self.roles.values()
            for pid in pids
            if (cpu := _cpu_seconds(pid)) is not None
        }
        self._broker_threads = self._broker_thread_groups()
        self._started_at = time.monotonic()

    def _broker_thread_groups(self) -> dict[str, float]:
        total: dict[str, float] = {}
        for pid in self.roles.get("kafka broker", []):
            for name, seconds in _thread_groups(pid).items():
                total[name] = total.get(name, 0.0) + seconds
        return total

    def report(self, steps: int) -> str:
        """Cores used per kind of process, and CPU per step of all of them."""
        wall = time.monotonic() - self._started_at
        used: dict[str, float] = {}
        for role, pids in self.roles.items():
            total = 0.0
            for pid in pids:
                now = _cpu_seconds(pid)
                if now is not None and pid in self._start:
                    total += now - self._start[pid]
            used[role] = total
        parts = ", ".join(f"{role} {seconds / wall:.2f}" for role, seconds in used.items())
        per_step = sum(used.values()) / steps * 1e6 if steps else float("nan")
        # Which broker threads: request handling ("data-plane-kafk"), the JIT
        # compilers ("CN CompilerThre"), GC, the transaction marker sender, ...
        threads = {
            name: seconds - self._broker_threads.get(name, 0.0)
            for name, seconds in self._broker_thread_groups().items()
        }
        busiest = sorted(threads.items(), key=lambda kv: -kv[1])[:4]
        broker = ", ".join(f"{name} {seconds / wall:.2f}" for name, seconds in busiest)
        return (
            f"    cores used ({os.cpu_count()} on this machine): {parts};"
            f" {per_step:,.0f} µs of CPU per step in all\n"
            f"    broker threads, cores: {broker or 'no broker found'}"
        )
