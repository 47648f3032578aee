"""A short run of every `tasker bench` benchmark, so they keep working (not a timed test).

The runs start together (module fixture) to keep the file's wall time down; each test then checks
one run's JSON: every figure is there, nothing was lost, duplicated or altered, and what the run
created in the real services is gone. No assertion is about speed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.services, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]
TASKER = [sys.executable, "-c", "from tasker.cli import main; main()"]

RUNS = {
    "ingest-embedded": ["ingest", "--duration", "3", "--servers", "20", "--concurrency", "4", "--compare"],
    "ingest-distributed": [
        "ingest",
        "--mode",
        "distributed",
        "--duration",
        "3",
        "--servers",
        "20",
        "--concurrency",
        "4",
        "--ingesters",
        "1",
        "--packagers",
        "1",
        "--compare",
    ],
    "latency-distributed": [
        "latency",
        "--mode",
        "distributed",
        "--duration",
        "3",
        "--servers",
        "20",
        "--rate",
        "200",
        "--batch",
        "20",
    ],
    "history-embedded": ["history", "--hours", "1", "--repeats", "3"],
    "history-distributed": ["history", "--mode", "distributed", "--hours", "1", "--repeats", "3"],
    "tui": ["tui", "--servers", "20", "--seconds", "2", "--warmup", "1"],
    "registry-embedded": ["registry", "--finished", "40", "--open", "5", "--repeats", "3"],
    "registry-distributed": ["registry", "--mode", "distributed", "--finished", "40", "--open", "5", "--repeats", "3"],
}


def uses(*names: str):
    """Mark a test with the runs it reads, so a selection (-k) starts only those."""

    def mark(test):
        test.bench_runs = names
        return test

    return mark


@pytest.fixture(scope="module")
def runs(request) -> dict[str, tuple[int, dict, str]]:
    """name -> (exit status, the --json object or {}, stderr) of the selected tests' runs,
    started together."""
    module = sys.modules[__name__]
    needed = {
        name
        for item in request.session.items
        if item.module is module
        for name in getattr(item.function, "bench_runs", ())
    }
    started = {
        name: subprocess.Popen(
            [*TASKER, "bench", *RUNS[name], "--json"],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in RUNS
        if name in needed
    }
    done = {}
    for name, process in started.items():
        out, err = process.communicate(timeout=540)
        try:
            body = json.loads(out) if out.strip() else {}
        except ValueError:
            body = {"unparsed stdout": out[-2000:]}
        done[name] = (process.returncode, body, err)
    return done


def finished(runs, name: str) -> dict:
    status, body, err = runs[name]
    assert status == 0, f"tasker bench {' '.join(RUNS[name])} exited {status}:\n{err[-3000:]}\n{body}"
    assert body["benchmark"] == name.split("-")[0]
    assert body["machine"]["cores"] >= 1 and body["machine"]["python"]
    return body


def assert_exact(figures: dict) -> None:
    assert figures["readings_accepted"] > 0
    assert figures["drained"] is True
    for key in ("lost", "duplicated", "altered", "unexpected"):
        assert figures[key] == 0, f"{key}: {figures[key]}"
    assert figures["rows_read_back"] >= figures["readings_accepted"]
    for key in ("accepted_per_s", "stored_per_s", "stored_per_s_during_load", "drain_s"):
        assert isinstance(figures[key], (int, float)) and figures[key] >= 0, key
    assert figures["post_latency_ms"]["p99_ms"] is not None


@uses("ingest-embedded")
def test_ingest_embedded_stores_everything_once_beside_the_naive_design(runs):
    body = finished(runs, "ingest-embedded")
    assert body["parameters"]["mode"] == "embedded"
    assert_exact(body["tasker"])
    assert_exact(body["naive"])
    assert body["tasker"]["batch"] == 500 and body["naive"]["batch"] == 1
    assert body["ratio_stored_per_s"] > 0
    cpu = body["tasker"]["cpu_during_load"]["processes"]
    assert {"backend", "loadgen-1"} <= cpu.keys()
    assert not Path(body["tasker"]["names"]["folder"]).exists(), "the work folder was left behind"


@uses("ingest-distributed")
def test_ingest_distributed_with_split_roles_stores_everything_once(runs, cassandra_url, mongodb_url, amqp_url):
    body = finished(runs, "ingest-distributed")
    assert_exact(body["tasker"])
    assert_exact(body["naive"])
    assert set(body["tasker"]["processes"]) == {"backend-api", "ingest-1", "packager-1"}
    cpu = body["tasker"]["cpu_during_load"]["processes"]
    assert {"backend-api", "ingest-1", "packager-1", "rabbitmq", "cassandra", "loadgen-1"} <= cpu.keys()
    for target in ("tasker", "naive"):
        assert_gone(body[target]["names"], cassandra_url, mongodb_url, amqp_url)


@uses("latency-distributed")
def test_latency_reports_post_to_websocket_percentiles(runs, cassandra_url, mongodb_url, amqp_url):
    body = finished(runs, "latency-distributed")
    assert body["readings_posted"] > 0
    assert body["readings_received"] == body["readings_posted"]
    assert body["missing_on_websocket"] == 0
    ws = body["post_to_websocket"]
    assert ws["count"] == body["readings_posted"]
    assert 0 < ws["p50_ms"] <= ws["p99_ms"] <= ws["max_ms"]
    assert_gone(body["names"], cassandra_url, mongodb_url, amqp_url)


@uses("history-embedded", "history-distributed")
@pytest.mark.parametrize("name", ["history-embedded", "history-distributed"])
def test_history_reports_cold_and_warm_queries_and_disk_use(runs, name, cassandra_url, mongodb_url, amqp_url):
    body = finished(runs, name)
    assert body["stored"] == {m: {"rows": 3600, "distinct": 3600} for m in ("power", "co2")}
    for query in ("24h", "30d"):
        figures = body["queries"][query]
        assert figures["cold_ms"] > 0
        assert figures["warm"]["count"] == 3
        assert 0 < figures["points"] <= 500
    if name == "history-distributed":
        disk = body["disk"]
        assert disk["tables"]["raw_minutes"]["data_db"] > 0
        assert disk["readings_table_bytes_per_reading"] > 0
        assert_gone(body["names"], cassandra_url, mongodb_url, amqp_url)
    else:
        assert body["disk"]["file_bytes_per_reading"] > 0


@uses("tui")
def test_tui_reports_cpu_memory_and_first_frame(runs):
    body = finished(runs, "tui")
    assert body["figures"]["servers"] == 20
    assert body["figures"]["peak_rss_mb"] > 0
    assert body["checked"]["cpu_percent_of_one_core"] >= 0
    assert body["checked"]["first_frame_s"] > 0


@uses("registry-embedded", "registry-distributed")
@pytest.mark.parametrize("name", ["registry-embedded", "registry-distributed"])
def test_registry_times_the_hot_reads_before_and_after_archiving(runs, name, mongodb_url):
    body = finished(runs, name)
    operations = {"round_list_ms", "meter_look_ms", "history_read_ms", "get_ms", "read_and_write_ms"}
    assert set(body["before_archive"]) == set(body["after_archive"]) == operations
    assert body["archived"] == (40 if name.endswith("distributed") else 0)
    assert body["hourly_archive"]["archived"] == (
        body["hourly_archive"]["finished"] if name.endswith("distributed") else 0
    )
    assert body["archive_calls_s"][-1] >= 0
    if name.endswith("distributed"):  # its database is dropped
        from pymongo import MongoClient

        client = MongoClient(mongodb_url, serverSelectionTimeoutMS=3000)
        try:
            assert not [n for n in client.list_database_names() if n.startswith("tasker_bench_registry_")]
        finally:
            client.close()


@pytest.mark.parametrize("run", [1, 60, 7])
def test_every_reading_of_the_load_has_its_own_key_that_maps_back_to_it(run):
    """The exact count rests on this: from a stored key the benchmark finds the reading's batch."""
    from tasker_bench.loadgen import Layout

    layout = Layout(servers=5, generators=3, base_ms=1_767_000_000_000, step_ms=1000, run=run)
    keys = set()
    for generator in range(3):
        for n in range(3_000):
            server, metric, ts, _ = layout.reading(generator, n)
            assert layout.locate(server, metric, ts) == (generator, n)
            keys.add((server, metric, ts))
    assert len(keys) == 9_000
    assert layout.locate(0, 0, layout.base_ms - 1000) is None


@pytest.mark.parametrize(
    "args, message",
    [
        (["ingest", "--mode", "cloud"], "--mode 'cloud': expected embedded or distributed"),
        (["ingest", "--ingesters", "2"], "--ingesters/--packagers need --mode distributed"),
        (["latency", "--rate", "0"], "--rate and --duration must be more than 0"),
        (["history", "--hours", "0"], "--hours must be from 1 to 168"),
    ],
)
def test_bad_options_get_one_clear_line(args, message):
    began = time.monotonic()
    done = subprocess.run([*TASKER, "bench", *args], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert time.monotonic() - began < 30  # refused before anything was started


def assert_gone(names: dict, cassandra_url: str, mongodb_url: str, amqp_url: str) -> None:
    """What a distributed run created in the real services is deleted."""
    from cassandra.cluster import Cluster
    from pymongo import MongoClient

    from backend.adapters.cassandra import parse_url

    hosts, port, _ = parse_url(cassandra_url)
    cluster = Cluster(hosts, port=port, protocol_version=5)
    try:
        rows = cluster.connect().execute("SELECT keyspace_name FROM system_schema.keyspaces")
        assert names["cassandra_keyspace"] not in {r.keyspace_name for r in rows}
    finally:
        cluster.shutdown()
    if "mongodb_database" in names:
        client = MongoClient(mongodb_url, serverSelectionTimeoutMS=5000)
        try:
            assert names["mongodb_database"] not in client.list_database_names()
        finally:
            client.close()
    assert_no_queues(amqp_url, names["rabbitmq_prefix"])


def assert_no_queues(amqp_url: str, prefix: str) -> None:
    import asyncio

    import aio_pika

    from tasker_bench.stack import rabbitmq_names

    async def check() -> list[str]:
        left = []
        connection = await aio_pika.connect(amqp_url, timeout=10)
        async with connection:
            for queue in rabbitmq_names(prefix)[0]:
                channel = await connection.channel()
                try:
                    await channel.declare_queue(queue, passive=True)
                    left.append(queue)
                except aio_pika.exceptions.ChannelClosed:
                    pass  # NOT_FOUND: deleted
        return left

    assert asyncio.run(check()) == []
