"""Where the embedded broker keeps its journal, as chosen from TASKER_BROKER_URL."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.adapters.memory_broker import MemoryBroker
from backend.bootstrap import Backend, StartupError, journal_path
from tasker.config import Settings


def test_by_default_the_journal_sits_beside_the_sqlite_time_series(tmp_path: Path) -> None:
    assert journal_path("memory://", f"sqlite:///{tmp_path}/data/ts.db") == tmp_path / "data" / "queue.db"
    assert (tmp_path / "data").is_dir()


def test_without_sqlite_time_series_the_journal_goes_to_the_xdg_data_dir(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert journal_path("memory://", "cassandra://127.0.0.1:9042/ks") == tmp_path / "xdg" / "tasker" / "queue.db"


def test_a_path_in_the_url_names_the_journal(tmp_path: Path, monkeypatch) -> None:
    assert journal_path(f"memory:///{tmp_path}/q/mine.db", "sqlite:///elsewhere.db") == tmp_path / "q" / "mine.db"
    monkeypatch.chdir(tmp_path)
    assert journal_path("memory:///relative/queue.db") == Path("relative/queue.db")


def test_a_host_or_an_unwritable_place_is_one_line_naming_the_variable(tmp_path: Path) -> None:
    with pytest.raises(StartupError, match=r"^TASKER_BROKER_URL='memory://somehost': the embedded broker has no host"):
        journal_path("memory://somehost")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(StartupError) as refused:
        journal_path(f"memory:///{blocker}/queue.db")
    assert str(refused.value) == (
        f"TASKER_BROKER_URL='memory:///{blocker}/queue.db' (journal {blocker}/queue.db): {blocker} is a file, "
        "not a directory; expected memory:// or memory:///path/to/queue.db in a writable directory"
    )


def test_tasker_backend_journals_the_embedded_broker_beside_its_data(tmp_path: Path) -> None:
    settings = Settings(
        broker_url="memory://",
        timeseries_url=f"sqlite:///{tmp_path}/ts.db",
        registry_url=f"sqlite:///{tmp_path}/registry.db",
    )
    broker = Backend.create(settings).broker
    assert isinstance(broker, MemoryBroker)
    assert broker.journal is not None and broker.journal.path == tmp_path / "queue.db"
