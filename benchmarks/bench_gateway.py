"""The gateway's ``POST /v1/sessions`` and ``POST /v1/sessions:batch`` against a bare handler.

Three processes on loopback: the server under test, and a load generator
(raw asyncio HTTP/1.1 keep-alive client, C connections each sending one
request at a time) in another process. Same run, same broker:

* ours: ``agentstream api --no-projector`` (auth, rate limit, lag gate,
  validation, metrics, produce with acks=all, answer after the ack);
* bare: an aiohttp handler that parses the same body, builds the same
  StartSession record, encodes it and produces it with an idempotent acks=all
  AIOKafkaProducer, answering after the ack (no auth, no checks, no metrics).

Both run on uvloop and serve at once; the load alternates between them in
short rounds, so whatever else loads the machine falls on both. Reported per
round and as medians: requests/s, p50/p99 latency, the ratio ours/bare, and
the batch endpoint's sessions (events) per second. Server CPU time per
request (from /proc) is printed too: unlike requests/s it does not move with
other load on the machine. Targets:
single >= 8,000 req/s or >= 0.8x bare; batch >= 50,000 events/s.

Run: ``python -m benchmarks.bench_gateway [--seconds S] [--connections C]``
(needs the local Kafka and Postgres; topics get a unique prefix, deleted after).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROOT = Path(__file__).resolve().parents[1]
BODY = json.dumps({"agent": "demo", "input": "What is 6*7?"}).encode()


# --------------------------------------------------------------------- load generator


class _Conn(asyncio.Protocol):
    """One keep-alive connection: send a request, wait for its whole response, repeat."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.waiter: asyncio.Future[int] | None = None
        self.transport: Any = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0 or self.waiter is None:
            return
        head = bytes(self.buffer[:end]).lower()
        at = head.find(b"content-length:")
        length = 0
        if at >= 0:
            stop = head.find(b"\r\n", at)
            length = int(head[at + 15 : stop if stop >= 0 else None])
        if len(self.buffer) < end + 4 + length:
            return
        status = int(head[9:12])
        del self.buffer[: end + 4 + length]
        waiter, self.waiter = self.waiter, None
        waiter.set_result(status)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("closed"))


async def _load(
    port: int, path: str, body: bytes, key: str, connections: int, seconds: float
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    request = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    started = time.perf_counter()
    warmup_until = started + min(1.0, seconds / 5)
    deadline = warmup_until + seconds

    async def client() -> None:
        transport, conn = await loop.create_connection(_Conn, "127.0.0.1", port)
        conn.transport = transport
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while True:
            sent = time.perf_counter()
            if sent >= deadline:
                break
            conn.waiter = loop.create_future()
            transport.write(request)
            status = await conn.waiter
            done = time.perf_counter()
            if sent >= warmup_until:
                latencies.append(done - sent)
                statuses[status] = statuses.get(status, 0) + 1
        transport.close()

    await asyncio.gather(*(client() for _ in range(connections)))
    latencies.sort()
    n = len(latencies)
    return {
        "requests": n,
        "per_s": n / seconds,
        "p50_ms": latencies[n // 2] * 1000 if n else float("nan"),
        "p99_ms": latencies[min(n - 1, int(n * 0.99))] * 1000 if n else float("nan"),
        "statuses": statuses,
    }


def _run_load(args: argparse.Namespace) -> None:
    import uvloop

    body = Path(args.body).read_bytes() if args.body else BODY
    result = uvloop.run(_load(args.port, args.path, body, args.key, args.connections, args.seconds))
    print(json.dumps(result))


# --------------------------------------------------------------------- bare server


def _run_bare(args: argparse.Namespace) -> None:
    """The baseline: parse, build the same record, encode, produce, answer after the ack."""
    import uvloop
    from aiohttp import web
    from aiokafka import AIOKafkaProducer

    from schemas import Codec
    from streams.catalogue import Catalogue
    from streams.producer import producer_config, type_headers
    from streams.settings import KafkaSettings

    kafka = KafkaSettings(args.bootstrap, args.prefix, args.partitions)
    inbox = Catalogue.from_settings(kafka).inbox.name
    codec = Codec()
    headers = type_headers("StartSession")

    async def handle(request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        session_id = str(uuid.uuid4())
        record = {
            "event_id": str(uuid.uuid4()), "session_id": session_id, "tenant_id": "bare",
            "time_ms": int(time.time() * 1000), "causation_id": None, "correlation_id": None,
            "agent": body["agent"], "input": body["input"], "keep_open": False,
            "idle_timeout_ms": 0, "metadata": {},
        }  # fmt: skip
        producer: AIOKafkaProducer = request.app["producer"]
        future = await producer.send(
            inbox, codec.encode("StartSession", record), key=session_id.encode(), headers=headers
        )
        await future
        return web.json_response({"session_id": session_id}, status=202)

    async def lifecycle(app: web.Application) -> Any:
        producer = AIOKafkaProducer(**producer_config(kafka))
        await producer.start()
        app["producer"] = producer
        yield
        await producer.stop()

    app = web.Application()
    app.cleanup_ctx.append(lifecycle)
    app.router.add_post("/v1/sessions", handle)

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app.router.add_get("/healthz", healthz)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None,
                loop=uvloop.new_event_loop())  # fmt: skip


# --------------------------------------------------------------------- orchestration


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(port: int, path: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2):
                return
        except Exception:
            time.sleep(0.3)
    raise RuntimeError(f"server on {port} did not answer {path}")


def _load_process(
    port: int, path: str, key: str, seconds: float, connections: int, body: Path | None = None
) -> dict[str, Any]:
    command = [
        sys.executable, "-m", "benchmarks.bench_gateway", "--role", "load", "--port", str(port),
        "--path", path, "--key", key, "--seconds", str(seconds),
        "--connections", str(connections),
    ]  # fmt: skip
    if body is not None:
        command += ["--body", str(body)]
    out = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, check=False, timeout=seconds + 120
    )
    if out.returncode != 0:
        raise RuntimeError(f"load generator failed: {out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _serve(command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


async def _tenant(database_url: str) -> str:
    from agentstream.gateway.tenants import TenantStore
    from projections.db import create_engine
    from projections.migrate import upgrade

    await upgrade(database_url)
    engine = create_engine(database_url, pool_size=2)
    try:
        name = f"bench-{uuid.uuid4().hex[:8]}"
        _, key = await TenantStore(engine).create(name, rate_per_s=1e9, burst=10**9)
    finally:
        await engine.dispose()
    return key


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds the process has used (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median requests/s."""
    return sorted(runs, key=lambda r: float(r["per_s"]))[len(runs) // 2]


def _line(name: str, r: dict[str, Any]) -> str:
    cpu = f"   {r['cpu_us']:5.0f} µs CPU/req" if "cpu_us" in r else ""
    return (
        f"  {name:<28} {r['per_s']:>9,.0f} req/s   p50 {r['p50_ms']:6.2f} ms   "
        f"p99 {r['p99_ms']:6.2f} ms{cpu}   statuses {r['statuses']}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--role", choices=["bench", "load", "bare"], default="bench")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--path", default="/v1/sessions")
    parser.add_argument("--key", default="")
    parser.add_argument("--body")
    parser.add_argument(
        "--bootstrap", default=os.environ.get("AGENTSTREAM_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    )
    parser.add_argument("--prefix", default="")
    parser.add_argument("--partitions", type=int, default=12)
    args = parser.parse_args()
    if args.role == "load":
        _run_load(args)
        return 0
    if args.role == "bare":
        _run_bare(args)
        return 0
    return _bench(args)


def _bench(args: argparse.Namespace) -> int:
    import tempfile

    from agentstream.gateway.testkit import database_url
    from streams.admin import delete_topics, ensure_topics, require_ok
    from streams.catalogue import Catalogue
    from streams.settings import KafkaSettings

    prefix = f"bench{uuid.uuid4().hex[:6]}"
    kafka = KafkaSettings(args.bootstrap, prefix, args.partitions)
    catalogue = Catalogue.from_settings(kafka)
    require_ok(asyncio.run(ensure_topics(kafka, catalogue)))
    key = asyncio.run(_tenant(database_url()))
    env = {
        **os.environ,
        "AGENTSTREAM_API_MAX_LAG": str(10**12),  # no engine here: the lag only grows
        "AGENTSTREAM_DATABASE_URL": database_url(),
    }
    kafka_args = [
        "--bootstrap", args.bootstrap, "--prefix", prefix, "--partitions", str(args.partitions)
    ]  # fmt: skip
    print(f"gateway benchmark: {os.cpu_count()} cores, {args.connections} connections, "
          f"{args.seconds:g} s per run, topics {prefix}.*")  # fmt: skip
    runs: dict[str, list[dict[str, Any]]] = {"bare": [], "ours": [], "batch": []}
    bare_port, ours_port = _free_port(), _free_port()
    servers = [
        _serve([sys.executable, "-m", "benchmarks.bench_gateway", "--role", "bare",
                "--port", str(bare_port), *kafka_args], env),
        _serve([sys.executable, "-m", "agentstream.cli", "api", "--no-projector",
                "--port", str(ours_port), *kafka_args], env),
    ]  # fmt: skip
    with tempfile.NamedTemporaryFile("wb", suffix=".json", delete=False) as handle:
        starts = [{"agent": "demo", "input": f"What is {i}*7?"} for i in range(args.batch_size)]
        handle.write(json.dumps({"sessions": starts}).encode())
    try:
        _wait_ready(bare_port, "/healthz")
        _wait_ready(ours_port, "/readyz")
        for port in (bare_port, ours_port):
            _load_process(port, "/v1/sessions", key, 1.0, 4)  # warm-up
        # Alternate short rounds, so load from anything else on the machine falls on both.
        pids = {"bare": servers[0].pid, "ours": servers[1].pid}
        for _ in range(args.rounds):
            for name, port in (("bare", bare_port), ("ours", ours_port)):
                cpu = _cpu_s(pids[name])
                run = _load_process(port, "/v1/sessions", key, args.seconds, args.connections)
                # CPU per request does not depend on what else runs on the machine.
                run["cpu_us"] = (_cpu_s(pids[name]) - cpu) / max(1, run["requests"]) * 1e6
                runs[name].append(run)
                label = "bare aiohttp handler" if name == "bare" else "agentstream api"
                print(_line(label, run))
            runs["batch"].append(
                _load_process(ours_port, "/v1/sessions:batch", key, args.seconds, 4,
                              Path(handle.name))
            )  # fmt: skip
    finally:
        for server in servers:
            _stop(server)
        os.unlink(handle.name)
        asyncio.run(delete_topics(kafka, [spec.name for spec in catalogue.all()]))
    results = {name: _median(found) for name, found in runs.items()}
    print(_line("median bare", results["bare"]))
    print(_line("median agentstream api", results["ours"]))
    ours_r, bare_r, batch_r = results["ours"], results["bare"], results["batch"]
    ratio = ours_r["per_s"] / bare_r["per_s"]
    print(f"ratio ours/bare, medians of {args.rounds} alternating rounds: {ratio:.2f}x")
    cpu_bare = statistics.median(r["cpu_us"] for r in runs["bare"])
    cpu_ours = statistics.median(r["cpu_us"] for r in runs["ours"])
    print(
        f"server CPU per request: bare {cpu_bare:.0f} µs, ours {cpu_ours:.0f} µs "
        f"(capacity ratio on a core of its own: {cpu_bare / cpu_ours:.2f}x)"
    )
    events = batch_r["per_s"] * args.batch_size
    print(
        f"  {'batch of ' + str(args.batch_size):<28} {batch_r['per_s']:>9,.1f} req/s = "
        f"{events:,.0f} sessions/s   p99 {batch_r['p99_ms']:.1f} ms   "
        f"statuses {batch_r['statuses']}"
    )
    single_ok = ours_r["per_s"] >= 8000 or ratio >= 0.8
    print(f"single POST: {'PASS' if single_ok else 'FAIL'} (>= 8,000 req/s or >= 0.8x bare)")
    print(f"batch: {'PASS' if events >= 50_000 else 'FAIL'} (>= 50,000 events/s)")
    return 0 if single_ok and events >= 50_000 else 1


if __name__ == "__main__":
    sys.exit(main())
