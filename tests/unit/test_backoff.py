"""The retry backoff the brokers, the packager and the backend's startup share."""

from __future__ import annotations

from tasker.backoff import RetryBackoff


def test_the_delay_doubles_per_failure_up_to_the_maximum_and_a_success_resets_it():
    backoff = RetryBackoff(0.5, 10.0)
    assert [backoff.failed() for _ in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    backoff.succeeded()
    assert backoff.failed() == 0.5


def test_a_long_outage_stays_at_the_maximum():
    backoff = RetryBackoff(0.2, 5.0)
    assert [backoff.failed() for _ in range(1000)][-1] == 5.0


def test_no_initial_delay_means_no_wait():
    assert RetryBackoff(0.0, 5.0).failed() == 0.0
