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
