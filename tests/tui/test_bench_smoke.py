"""A short run of the TUI benchmark, so it keeps working (its figures are not judged here)."""

from __future__ import annotations

from tasker_tui.bench import run_tui_bench


def test_tui_benchmark_runs_and_reports_every_figure(capsys):
    figures = run_tui_bench(servers=5, seconds=2, size="80x24", warmup=1)
    assert figures["rows_shown"] == 5
    assert figures["cpu_percent_of_one_core"] > 0 and figures["peak_rss_mb"] > 10
    # The first frame of the real `tasker tui` in a terminal, and of the headless child beside it.
    assert 0 < figures["first_frame_s_idle_median"] <= figures["first_frame_s_idle_max"] < 60
    assert 0 < figures["first_frame_s_headless_idle_median"] < 60 and figures["frames_per_s"] > 0
    assert figures["websocket_frames_per_s"] > 0  # the sensors' readings reached the TUI live
    printed = capsys.readouterr().out
    assert "cpu_percent_of_one_core" in printed and "frame_ms_p99" in printed
