"""The session store: one token per backend URL in the XDG config dir, private, until it expires."""

from __future__ import annotations

import stat

import pytest

from tasker.session import forget_session, load_session, parse_expiry, resolve_token, save_session, session_file

URL = "http://127.0.0.1:8470"


@pytest.fixture(autouse=True)
def config_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.delenv("TASKER_TOKEN", raising=False)
    return tmp_path


def test_a_saved_session_is_private_and_reused(config_home):
    save_session(
        URL + "/", {"token": "t1", "expires_at": "2099-01-01T00:00:00Z", "role": "sysadmin", "username": "alice"}
    )
    path = session_file()
    assert path == config_home / "tasker" / "session.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    session = load_session(URL)
    assert session is not None and session.token == "t1" and session.username == "alice"


def test_sessions_are_kept_per_backend_url():
    save_session(URL, {"token": "t1", "expires_at": "2099-01-01T00:00:00Z"})
    save_session("http://10.0.0.2:8470", {"token": "t2", "expires_at": "2099-01-01T00:00:00Z"})
    assert load_session(URL).token == "t1"
    assert load_session("http://10.0.0.2:8470").token == "t2"
    assert forget_session(URL) is True
    assert load_session(URL) is None
    assert load_session("http://10.0.0.2:8470").token == "t2"
    assert forget_session(URL) is False


def test_an_expired_session_is_not_used():
    save_session(URL, {"token": "old", "expires_at": "2001-01-01T00:00:00Z"})
    assert load_session(URL) is None
    assert resolve_token(URL) is None


def test_tasker_token_wins_over_the_file():
    save_session(URL, {"token": "from-file", "expires_at": "2099-01-01T00:00:00Z"})
    assert resolve_token(URL, {"TASKER_TOKEN": "from-env"}) == "from-env"
    assert resolve_token(URL, {}) == "from-file"


def test_a_corrupt_file_means_no_session(config_home):
    (config_home / "tasker").mkdir()
    session_file().write_text("{not json")
    assert load_session(URL) is None
    save_session(URL, {"token": "fresh"})  # and saving repairs it
    assert load_session(URL).token == "fresh"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2030-01-01T00:00:00Z", 1_893_456_000_000),
        ("2030-01-01T01:00:00+01:00", 1_893_456_000_000),
        (1_893_456_000_000, 1_893_456_000_000),
        (1_893_456_000, 1_893_456_000_000),
        ("soon", None),
        (None, None),
    ],
)
def test_expiry_formats(value, expected):
    assert parse_expiry(value) == expected
