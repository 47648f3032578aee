"""The client timeouts are settings: TASKER_HEADER_TIMEOUT and TASKER_BODY_TIMEOUT reach the
app's ClientTimeouts, and a value that is not a positive number stops with one line naming it."""

from __future__ import annotations

import pytest

from backend.http.app import ClientTimeouts
from tasker.config import ConfigError, load_settings


def test_the_timeouts_come_from_the_environment():
    settings = load_settings({"TASKER_HEADER_TIMEOUT": "2.5", "TASKER_BODY_TIMEOUT": "45"})
    assert ClientTimeouts.from_settings(settings) == ClientTimeouts(header_s=2.5, body_s_per_mib=45.0)


def test_the_defaults_are_the_apps():
    assert ClientTimeouts.from_settings(load_settings({})) == ClientTimeouts()


@pytest.mark.parametrize(
    "variable, value",
    [
        ("TASKER_HEADER_TIMEOUT", "0"),
        ("TASKER_BODY_TIMEOUT", "soon"),
        ("TASKER_BODY_TIMEOUT", "nan"),
        ("TASKER_HEADER_TIMEOUT", "-1"),
    ],
)
def test_a_timeout_that_is_not_a_positive_number_is_refused_naming_it(variable, value):
    with pytest.raises(ConfigError, match=f"^{variable}='{value}': expected a number of seconds"):
        load_settings({variable: value})
