"""`tasker demo` refuses a data dir it cannot use in one line, before drawing anything."""

from __future__ import annotations

from tasker_tui.demo import run_demo


def test_a_data_dir_under_a_file_is_refused_in_one_line(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    assert run_demo(data_dir=blocker / "demo") == 2
    err = capsys.readouterr().err
    assert err == f"tasker demo: --data-dir {blocker / 'demo'}: cannot use it as a directory (Not a directory)\n"


def test_the_second_tui_hint_names_a_command_the_shell_can_run(monkeypatch, tmp_path):
    # After scripts/setup, `tasker` lives in .venv/bin, which is not on PATH: the hint said
    # `tasker tui`, which a newcomer's shell could not find.
    from tasker_tui import demo

    script = tmp_path / ".venv" / "bin" / "tasker"
    script.parent.mkdir(parents=True)
    script.write_text("")
    monkeypatch.setattr(demo.sys, "argv", [str(script), "demo"])
    monkeypatch.setattr(demo.shutil, "which", lambda name: None)
    assert demo.tasker_command() == str(script)
    monkeypatch.setattr(demo.shutil, "which", lambda name: "/usr/local/bin/tasker")
    assert demo.tasker_command() == "tasker"
