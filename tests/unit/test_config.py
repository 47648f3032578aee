"""Settings: every unusable value is one line naming where it came from and what is expected."""

from __future__ import annotations

import pytest

from tasker.config import ConfigError, load_settings, redact_url


@pytest.fixture(autouse=True)
def no_config_file(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))


def error_for(**environ: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ=environ)
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    "variable, value, says",
    [
        ("TASKER_BROKER_URL", "amqp://[::1", "cannot be parsed"),
        ("TASKER_BROKER_URL", "amqp://", "no host"),
        ("TASKER_BROKER_URL", "kafka://broker:9092", "unknown scheme 'kafka'"),
        ("TASKER_BROKER_URL", "amqp://guest:guest@127.0.0.1:99999/", "port '99999' is not a number from 1 to 65535"),
        ("TASKER_TIMESERIES_URL", "cassandra://127.0.0.1:99999/ks", "port '99999'"),
        ("TASKER_TIMESERIES_URL", "cassandra://127.0.0.1:9042/", "no keyspace"),
        ("TASKER_TIMESERIES_URL", "cassandra://127.0.0.1:9042/bad-ks", "keyspace 'bad-ks'"),
        ("TASKER_REGISTRY_URL", "mongodb://[::1", "cannot be parsed"),
        ("TASKER_REGISTRY_URL", "mongodb://127.0.0.1:27017/bad.db$", "database name 'bad.db$'"),
        ("TASKER_REGISTRY_URL", "mongodb://127.0.0.1:0/qa", "port '0'"),
        ("TASKER_URL", "http://", "no host"),
        ("TASKER_URL", "http://127.0.0.1:abc", "port 'abc'"),
        ("TASKER_URL", "http://[::1", "cannot be parsed"),
        ("TASKER_LISTEN", "127.0.0.1:99999", "port from 0 to 65535"),
        ("TASKER_LISTEN", "garbage", "expected host:port"),
        ("TASKER_RETENTION_DAYS", "0", "at least 1"),
        ("TASKER_RETENTION_DAYS", "a year", "whole number of days"),
    ],
)
def test_a_bad_value_names_the_variable_the_problem_and_the_expected_form(variable, value, says):
    message = error_for(**{variable: value})
    assert message.startswith(f"{variable}=")
    assert says in message


def test_a_url_error_says_what_form_is_expected():
    assert error_for(TASKER_TIMESERIES_URL="cassandra://h:1x/ks").endswith(
        "expected sqlite:///path/to/file.db or cassandra://host[,host][:9042]/keyspace"
    )


def test_passwords_never_appear_in_an_error():
    message = error_for(TASKER_BROKER_URL="amqp://tasker:s3cret@127.0.0.1:99999/")
    assert "s3cret" not in message and "amqp://tasker:***@127.0.0.1:99999/" in message
    assert redact_url("mongodb://u:pw@h:27017/db") == "mongodb://u:***@h:27017/db"
    assert redact_url("amqp://u:pw@[::1") == "amqp://u:***@[::1"


def test_a_flag_is_named_as_the_flag():
    with pytest.raises(ConfigError, match=r"^--url 'http://127.0.0.1:70000': port '70000'"):
        load_settings(environ={}, url="http://127.0.0.1:70000")


def test_good_values_pass_including_ipv6_and_host_lists():
    settings = load_settings(
        environ={
            "TASKER_LISTEN": "[::1]:0",
            "TASKER_URL": "http://[::1]:8470",
            "TASKER_TIMESERIES_URL": "cassandra://c1,c2:9042/qa_1",
            "TASKER_REGISTRY_URL": "mongodb://m:27017/",
            "TASKER_RETENTION_DAYS": "30",
        }
    )
    assert settings.listen_host_port == ("::1", 0)
    assert settings.retention_days == 30


def test_the_config_file_is_named_and_typos_in_it_are_refused(tmp_path):
    path = tmp_path / "config" / "tasker" / "config.toml"
    path.parent.mkdir(parents=True)
    path.write_text('brokr_url = "amqp://h/"\n')
    with pytest.raises(ConfigError, match=r"config.toml: unknown setting 'brokr_url'; known: broker_url"):
        load_settings(environ={})
    path.write_text("listen = 8470\n")
    with pytest.raises(ConfigError, match=r"^listen = '8470' in .*config.toml: must be text"):
        load_settings(environ={})
    path.write_text('url = "http://backend.example:8470"\n')
    assert load_settings(environ={}).url == "http://backend.example:8470"
    assert load_settings(environ={"TASKER_URL": "http://other:1"}).url == "http://other:1"
