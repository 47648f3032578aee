"""The login throttle over time (a fake clock) and in parallel, the password gate, and the
expired-session purge."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from backend.adapters.sqlite_registry import SqliteRegistry
from backend.ports import SessionRecord
from backend.services.auth import AuthService
from backend.services.errors import Unauthorized
from backend.services.login_guard import Attempt, LoginThrottle, PasswordGate, TooManyAttempts
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


def test_a_pairs_delay_grows_after_its_free_failures_and_is_capped() -> None:
    clock = Clock()
    throttle = LoginThrottle(free_failures=3, first_delay_s=1, max_delay_s=8, clock=clock)
    failures(throttle, "erin", "10.0.0.1", 3)  # at once; from now on each failure doubles the wait
    waits = []
    for _ in range(6):
        with pytest.raises(TooManyAttempts) as refused:
            throttle.begin("erin", "10.0.0.1")
        waits.append(refused.value.retry_after_s)
        clock.now += refused.value.retry_after_s
        throttle.begin("erin", "10.0.0.1")
        throttle.end("erin", "10.0.0.1", False)
    assert waits == [1, 2, 4, 8, 8, 8]


def test_guessing_from_one_address_never_slows_the_user_elsewhere_nor_others_behind_the_nat() -> None:
    # Five wrong passwords from anywhere used to lock the user out for 5 minutes, and five from
    # one address every user at that address: a denial of service any stranger could cause.
    clock = Clock()
    throttle = LoginThrottle(clock=clock)
    for _ in range(12):
        with contextlib.suppress(TooManyAttempts):
            failures(throttle, "erin", "203.0.113.7", 1)
        clock.now += 400
    for i in range(50):
        failures(throttle, f"guess-{i}", "198.51.100.1", 1)
    assert throttle.begin("erin", "192.0.2.10").suspect is True  # suspect (erin is guessed at) but let in
    throttle.end("erin", "192.0.2.10", True)
    assert throttle.begin("frank", "198.51.100.1").suspect is True  # behind the guessing NAT: let in
    throttle.end("frank", "198.51.100.1", True)
    assert throttle.begin("grace", "192.0.2.11") == Attempt(False, 0)  # nothing known against: clean


def test_an_outage_counts_as_no_failure() -> None:
    throttle = LoginThrottle(free_failures=2, clock=Clock())
    for _ in range(5):
        throttle.begin("erin", "10.0.0.1")
        throttle.end("erin", "10.0.0.1", None)
    assert throttle.begin("erin", "10.0.0.1").suspect is False


def test_parallel_guesses_of_one_pair_cannot_slip_in_before_the_first_fails() -> None:
    throttle = LoginThrottle(free_failures=3, clock=Clock())
    for _ in range(3):
        throttle.begin("erin", "10.0.0.1")  # none finished yet
    with pytest.raises(TooManyAttempts, match="still being checked"):
        throttle.begin("erin", "10.0.0.1")
    throttle.begin("erin", "10.0.0.9")  # another address is another pair


def test_over_the_global_bound_suspect_attempts_are_refused_and_clean_ones_are_not() -> None:
    clock = Clock()
    throttle = LoginThrottle(global_failures=20, clock=clock)
    for i in range(20):
        failures(throttle, f"user-{i}", f"10.0.1.{i}", 1)
    with pytest.raises(TooManyAttempts, match="on this server right now"):
        throttle.begin("user-3", "10.0.1.3")  # that pair failed: suspect
    assert throttle.begin("erin", "10.0.0.1").suspect is False
    clock.now += 61  # the flood has left the minute
    assert throttle.begin("user-3", "10.0.1.3").suspect is True


def test_tracked_names_stay_bounded() -> None:
    clock = Clock()
    throttle = LoginThrottle(max_keys=100, clock=clock)
    for i in range(1000):
        failures(throttle, f"user-{i}", f"10.0.{i // 250}.{i % 250}", 1)
        clock.now += 0.01
    assert len(throttle._records) <= 100


async def test_a_real_login_is_checked_before_a_flood_of_suspect_ones() -> None:
    # Measured before the gate: a flood of wrong logins made a real one take 11 s.
    gate = PasswordGate(slots=2, max_suspect_waiting=1_000)
    order: list[str] = []
    release = asyncio.Event()

    async def check(name: str, attempt: Attempt) -> None:
        async with gate.slot(attempt):
            order.append(name)
            await release.wait()

    # Not yet suspect (a burst of fresh names), then suspect ones, then the real login.
    early = [asyncio.create_task(check(f"early-{i}", Attempt(False, 1 + i % 9))) for i in range(30)]
    flood = [asyncio.create_task(check(f"flood-{i}", Attempt(True, 50))) for i in range(100)]
    await asyncio.sleep(0)
    real = asyncio.create_task(check("real", Attempt(False, 0)))
    await asyncio.sleep(0)
    release.set()
    await asyncio.gather(real, *early, *flood)
    assert order.index("real") == 2  # right after the two checks already running


async def test_suspect_attempts_beyond_the_queue_bound_are_refused_at_once() -> None:
    gate = PasswordGate(slots=1, max_suspect_waiting=3)
    release = asyncio.Event()

    async def check(suspect: bool) -> None:
        async with gate.slot(Attempt(suspect, 5 if suspect else 0)):
            await release.wait()

    held = [asyncio.create_task(check(True)) for _ in range(4)]  # one running, three waiting
    await asyncio.sleep(0)
    with pytest.raises(TooManyAttempts, match="being checked right now"):
        await check(True)
    clean = asyncio.create_task(check(False))  # a clean attempt still queues
    await asyncio.sleep(0)
    assert not clean.done()
    release.set()
    await asyncio.gather(clean, *held)


async def test_wrong_passwords_at_once_for_one_pair_are_cut_off(tmp_path: Path) -> None:
    registry = SqliteRegistry(tmp_path / "registry.db")
    await registry.start()
    try:
        auth = AuthService(registry)
        await auth.add_user("erin", "sysadmin", "erin's long password")
        body = {"username": "erin", "password": "wrong guess"}
        outcomes = await asyncio.gather(
            *(auth.login(body, client="10.0.0.1") for _ in range(12)), return_exceptions=True
        )
        assert sum(isinstance(o, Unauthorized) for o in outcomes) == 3
        assert sum(isinstance(o, TooManyAttempts) for o in outcomes) == 9
        result = await auth.login({"username": "erin", "password": "erin's long password"}, client="10.0.0.2")
        assert result.username == "erin"
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
