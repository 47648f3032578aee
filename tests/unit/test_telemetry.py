"""The Prometheus text of /metrics."""

from __future__ import annotations

from backend.services.telemetry import Telemetry


async def test_counters_gauges_and_histograms_render_in_prometheus_text():
    telemetry = Telemetry()
    telemetry.readings_accepted.inc(5, metric="power")
    telemetry.readings_accepted.inc(2, metric="power")
    telemetry.store_latency.observe(0.003)
    telemetry.store_latency.observe(20.0)

    async def depth() -> None:
        telemetry.queue_depth.set(7, queue="readings.power")

    telemetry.add_collector(depth)
    text = await telemetry.render()
    lines = text.splitlines()
    assert "# TYPE tasker_readings_accepted_total counter" in lines
    assert 'tasker_readings_accepted_total{metric="power"} 7' in lines
    assert 'tasker_queue_depth{queue="readings.power"} 7' in lines
    assert 'tasker_store_write_seconds_bucket{le="0.0025"} 0' in lines
    assert 'tasker_store_write_seconds_bucket{le="0.005"} 1' in lines
    assert 'tasker_store_write_seconds_bucket{le="+Inf"} 2' in lines
    assert "tasker_store_write_seconds_count 2" in lines


async def test_a_failing_collector_does_not_break_the_scrape():
    telemetry = Telemetry()

    async def broken() -> None:
        raise RuntimeError("broker gone")

    telemetry.add_collector(broken)
    assert "tasker_readings_stored_total" in await telemetry.render()


async def test_the_health_watch_logs_an_outage_once_and_the_recovery(caplog):
    import logging

    from backend.ports import Unavailable
    from backend.services.health import HealthWatch

    state = {"down": False}

    async def ping() -> None:
        if state["down"]:
            raise Unavailable("RabbitMQ at 127.0.0.1:5672: connection refused")

    telemetry = Telemetry()
    watch = HealthWatch({"broker": ping}, telemetry)
    caplog.set_level(logging.INFO, logger="backend.services.health")
    state["down"] = True
    for _ in range(3):
        await watch.check_once()
    assert telemetry.dependency_up.value(dependency="broker") == 0
    state["down"] = False
    await watch.check_once()
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "broker unavailable: RabbitMQ at 127.0.0.1:5672: connection refused"
    assert lines[1].startswith("broker available again after") and len(lines) == 2
    assert telemetry.dependency_up.value(dependency="broker") == 1
