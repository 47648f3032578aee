"""The login throttle over time (a fake clock) and in parallel, and the expired-session purge."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from backend.adapters.sqlite_registry import SqliteRegistry
from backend.ports import SessionRecord
from backend.services.auth import AuthService, LoginThrottle, TooManyAttempts, Unauthorized
from backend.services.timestamps import now_ms


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def failures(throttle: LoginThrottle, username: str, address: str, times: int) -> None:
    for _ in range(times):
        throttle.begin(username, address)
        throttle.end(username, address, False)


def test_the_window_slides_and_retry_after_says_when_the_oldest_failure_leaves_it() -> None:
    clock = Clock()
    throttle = LoginThrottle(limit=3, window_s=60, clock=clock)
    failures(throttle, "erin", "10.0.0.1", 1)
    clock.now += 20
    failures(throttle, "erin", "10.0.0.2", 2)
    with pytest.raises(TooManyAttempts) as refused:
        throttle.begin("erin", "10.0.0.3")
    assert refused.value.retry_after_s == 40
    clock.now += 40  # the first failure has left the window
    throttle.begin("erin", "10.0.0.3")
    throttle.end("erin", "10.0.0.3", True)


def test_an_outage_counts_as_no_failure() -> None:
    throttle = LoginThrottle(limit=2, window_s=60, clock=Clock())
    for _ in range(5):
        throttle.begin("erin", "10.0.0.1")
        throttle.end("erin", "10.0.0.1", None)
    throttle.begin("erin", "10.0.0.1")


def test_attempts_being_checked_count_so_parallel_guesses_do_not_slip_in() -> None:
    throttle = LoginThrottle(limit=3, window_s=60, clock=Clock())
    for _ in range(3):
        throttle.begin("erin", "10.0.0.1")  # none finished yet
    with pytest.raises(TooManyAttempts, match="too many login attempts at once for user 'erin'"):
        throttle.begin("erin", "10.0.0.9")
    for _ in range(3):
        throttle.end("erin", "10.0.0.1", True)
    throttle.begin("erin", "10.0.0.9")


def test_tracked_names_stay_bounded() -> None:
    clock = Clock()
    throttle = LoginThrottle(limit=5, window_s=60, max_keys=100, clock=clock)
    for i in range(1000):
        failures(throttle, f"user-{i}", f"10.0.{i // 250}.{i % 250}", 1)
        clock.now += 0.01
    assert len(throttle._failures) <= 100


async def test_parallel_wrong_passwords_are_cut_off_at_the_limit(tmp_path: Path) -> None:
    registry = SqliteRegistry(tmp_path / "registry.db")
    await registry.start()
    try:
        auth = AuthService(registry)
        await auth.add_user("erin", "sysadmin", "erin's long password")
        body = {"username": "erin", "password": "wrong guess"}
        outcomes = await asyncio.gather(*(auth.login(body, client="10.0.0.1") for _ in range(12)),
                                        return_exceptions=True)
        assert sum(isinstance(o, Unauthorized) for o in outcomes) == 5
        assert sum(isinstance(o, TooManyAttempts) for o in outcomes) == 7
    finally:
        await registry.close()


async def test_expired_sessions_are_purged_in_the_background(tmp_path: Path) -> None:
    registry = SqliteRegistry(tmp_path / "registry.db")
    await registry.start()
    auth = AuthService(registry)
    try:
        now = now_ms()
        await registry.add_session(SessionRecord("expired", "erin", "sysadmin", now - 1, now - 10))
        await registry.add_session(SessionRecord("live", "erin", "sysadmin", now + 60_000, now))
        auth.start_purging(interval_s=0.05)
        for _ in range(100):
            if await registry.get_session("expired") is None:
                break
            await asyncio.sleep(0.02)
        assert await registry.get_session("expired") is None, "the expired session was never purged"
        assert await registry.get_session("live") is not None
        # It keeps going: a session that expires later goes too.
        await registry.add_session(SessionRecord("soon", "erin", "sysadmin", now_ms() + 50, now))
        for _ in range(100):
            if await registry.get_session("soon") is None:
                break
            await asyncio.sleep(0.02)
        assert await registry.get_session("soon") is None
    finally:
        await auth.close()
        await registry.close()
