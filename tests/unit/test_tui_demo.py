"""`tasker demo` refuses a data dir it cannot use in one line, before drawing anything."""

from __future__ import annotations

from tasker_tui.demo import run_demo


def test_a_data_dir_under_a_file_is_refused_in_one_line(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    assert run_demo(data_dir=blocker / "demo") == 2
    err = capsys.readouterr().err
    assert err == f"tasker demo: --data-dir {blocker / 'demo'}: cannot use it as a directory (Not a directory)\n"
