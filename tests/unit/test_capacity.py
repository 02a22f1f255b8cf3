"""The capacity model's arithmetic (benchmarks/capacity.py), on inputs small enough to check by hand."""

from __future__ import annotations

import json
import math
from dataclasses import fields

import pytest

from benchmarks.capacity import Inputs, Target, main, plan, requests_per_step

SIMPLE = Inputs(
    worker_cpu_us_per_step=500,
    requests_per_step_curve=((1.0, 1.0), (1e9, 1.0)),
    broker_cpu_us_per_request=100,
    max_steps_per_partition=1000,
    calls_in_flight_per_executor=1000,
    bytes_produced_per_step=1000,
    consumer_fanout=2,
    pg_rows_per_step=3,
    pg_rows_per_s_per_projector=1000,
    memory_per_session_bytes=100,
    max_sessions_per_partition=100,
    snapshot_bytes_per_session=10,
    replication_factor=3,
    cores_per_broker=4,
    broker_network_bytes_per_s=1e6,
    utilisation=0.5,
    growth=1.0,
)


def test_a_small_plan_by_hand() -> None:
    result = plan(SIMPLE, Target(sessions=1000, steps_per_s=1000, model_latency_s=2))
    values = {f.name: f.value for f in result.figures}
    assert values["calls in flight"] == 2000  # 1000 steps/s x 2 s
    assert values["worker cores"] == pytest.approx(1.0)  # 1000 x 500 µs / 0.5
    assert values["worker processes"] == 4  # 2000 in flight / 1000 each / 0.5
    assert values["partitions"] == 4  # at least one per worker
    assert values["broker requests"] == pytest.approx(1000)
    # produce 1 MB/s; consumers 2 MB/s; two replicas fetched in and sent out: 4 MB/s
    assert values["broker network"] == pytest.approx(7e6)
    assert values["broker cores"] == pytest.approx(1000 * 100e-6 * 2 / 0.5)
    assert values["brokers"] == 7  # the network decides: 7 MB/s at 1 MB/s each
    assert values["Postgres rows written"] == 3000
    assert values["projector processes"] == 6  # 3000 / (1000 x 0.5)
    assert values["Postgres snapshot storage"] == 10_000
    assert values["session memory, all resident"] == 100_000
    assert values["sessions kept in memory"] == 400  # 4 partitions x 100
    assert values["session memory per worker, as capped"] == pytest.approx(400 * 100 / 4)


def test_the_busiest_constraint_decides() -> None:
    cpu_bound = plan(SIMPLE, Target(1000, steps_per_s=10_000, model_latency_s=0.01))
    assert cpu_bound["worker processes"].value == math.ceil(10_000 * 500e-6 / 0.5)
    few_brokers = Inputs(**{**SIMPLE.__dict__, "broker_network_bytes_per_s": 1e9})
    assert plan(few_brokers, Target(1000, 1000, 2))["brokers"].value == 3  # RF is the floor
    grown = Inputs(**{**SIMPLE.__dict__, "growth": 2.0})
    assert plan(grown, Target(1000, 1000, 2))["partitions"].value == 8


def test_requests_per_step_follow_the_measured_curve() -> None:
    curve = ((100.0, 8.0), (400.0, 2.0), (1600.0, 1.0))
    assert requests_per_step(curve, 100) == 8.0
    assert requests_per_step(curve, 200) == pytest.approx(4.0)  # halfway, log-log
    assert requests_per_step(curve, 800) == pytest.approx(math.sqrt(2))
    assert requests_per_step(curve, 10) == 8.0  # no batches smaller than measured
    assert requests_per_step(curve, 10_000) == 1.0  # no credit beyond what was measured


def test_every_figure_names_known_drivers() -> None:
    result = plan(Inputs(), Target())
    known = {f.name for f in fields(Inputs)} | {f.name for f in fields(Target)}
    seen: set[str] = set()
    for figure in result.figures:
        assert figure.drivers, figure.name
        assert set(figure.drivers) <= known | seen, (figure.name, figure.drivers)
        seen.add(figure.name)
    assert set(Inputs().sources().values()) <= {"measured", "estimate", "choice"}


def test_the_command_line_takes_inputs_and_prints_json(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--steps", "1000", "--set", "utilisation=0.5", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["inputs"]["utilisation"] == 0.5 and printed["target"]["steps_per_s"] == 1000
    assert printed["sources"]["bytes_produced_per_step"] == "estimate"
    assert main(["--steps", "1000"]) == 0
    text = capsys.readouterr().out
    assert "driven by: steps_per_s" in text and "(estimate)" in text
    with pytest.raises(SystemExit, match="unknown input"):
        main(["--set", "cpu=1"])
