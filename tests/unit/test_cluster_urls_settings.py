"""Settings accept URLs that list a cluster's nodes, and name a bad host in one."""

from __future__ import annotations

import pytest

from tasker.config import ConfigError, load_settings


def test_settings_accept_cluster_urls():
    settings = load_settings(
        {
            "TASKER_BROKER_URL": "amqp://guest:guest@127.0.0.2,127.0.0.3,127.0.0.4/",
            "TASKER_TIMESERIES_URL": "cassandra://127.0.0.2,127.0.0.3,127.0.0.4/tasker?replication=3",
        }
    )
    assert settings.broker_url.startswith("amqp://guest:guest@127.0.0.2,127.0.0.3")


def test_settings_name_the_bad_host_of_a_cluster_url():
    with pytest.raises(ConfigError, match=r"TASKER_BROKER_URL=.*bad host 'b b'"):
        load_settings({"TASKER_BROKER_URL": "amqp://a,b b/"})
