"""`RetryBackoff`'s options for clients: jitter, and the count of failures a status line shows."""

from __future__ import annotations

from tasker.backoff import RetryBackoff


def test_jitter_spreads_each_delay_within_its_fraction_around_the_doubling():
    for step, expected in enumerate((1.0, 2.0, 4.0, 8.0, 8.0)):
        delays = []
        for _ in range(100):
            backoff = RetryBackoff(1.0, 8.0, jitter=0.2)
            for _ in range(step):
                backoff.failed()
            delays.append(backoff.failed())
        assert all(0.8 * expected <= d <= 1.2 * expected for d in delays)
        assert len(set(delays)) > 1  # spread, not one fixed figure


def test_without_jitter_the_delays_are_exact():
    backoff = RetryBackoff(0.5, 10.0)
    assert [backoff.failed() for _ in range(3)] == [0.5, 1.0, 2.0]


def test_failures_count_every_attempt_past_the_doubling_limit_and_reset_on_success():
    backoff = RetryBackoff(0.5, 10.0, jitter=0.2)
    assert backoff.failures == 0
    for _ in range(40):
        backoff.failed()
    assert backoff.failures == 40  # "attempt 40" on the banner, not stuck at the doubling limit
    assert backoff.failed() <= 12.0
    backoff.succeeded()
    assert backoff.failures == 0
