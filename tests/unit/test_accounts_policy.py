"""The password policy (issue 14 item 7): each case is a password an attacker guesses early,
refused wherever a password is set, with a message naming what is wrong."""

from __future__ import annotations

import pytest

from backend.services import password_policy
from backend.services.auth import AuthService, check_password
from backend.services.errors import InvalidField
from backend.services.password_policy import MIN_LENGTH, common_passwords, problem


@pytest.mark.parametrize(
    "password, says",
    [
        ("", "is empty"),
        (" " * 8, "is only whitespace"),
        ("\t \n ", "is only whitespace"),
        ("password", "too short"),
        ("password        ", "too short"),  # padded to length with spaces
        ("   short   ", "this one has 5"),
        ("line\nbreak-pass", "control character"),
        ("x" * 1025, "longer than 1024"),
    ],
)
def test_empty_whitespace_padded_and_short_passwords_are_refused(password, says):
    assert says in problem(password, "alice")


@pytest.mark.parametrize(
    "password",
    [
        "1234567890",
        "qwertyuiop",
        "password123",
        "Password1234",
        "P@ssw0rd2024!",
        "iloveyou!!",
        "letmein12345",
        "welcome@123",
        "administrator",
        "changeme2026",
        "tasker2026!!",
        "Summer2024!",
        "correcthorsebatterystaple",
        "1q2w3e4r5t",
        "qwerty12345",
        "!!dragon!!2024",
    ],
)
def test_the_commonest_passwords_are_refused_even_decorated(password):
    assert "common" in problem(password, "alice")


@pytest.mark.parametrize(
    "password, username",
    [
        ("alice-admin", "alice-admin"),
        ("ALICE-ADMIN", "alice-admin"),
        ("nimda-ecila", "alice-admin"),
        ("operations2024!", "operations"),
        ("0p3r4t10ns99", "operations"),
        ("admin-admin", "admin"),
        ("alice2024bob!", "alice"),
        ("ALICE_alice_1", "alice"),
    ],
)
def test_the_username_is_refused_as_its_own_password(password, username):
    assert "username" in problem(password, username)


@pytest.mark.parametrize(
    "password, says",
    [
        ("aaaaaaaaaaaa", "fewer than 4 different"),
        ("ababababab", "fewer than 4 different"),
        ("abcdefghijkl", "keyboard or alphabet"),
        ("0987654321!", "keyboard or alphabet"),
        ("asdfghjklzx", "keyboard or alphabet"),
        ("abcdeabcde", "repeated"),
        ("xyz1xyz1xyz1", "repeated"),
    ],
)
def test_trivial_passwords_are_refused(password, says):
    assert says in problem(password, "alice")


@pytest.mark.parametrize(
    "password",
    [
        "correct horse battery",
        "tasker-demo",
        "olga's long password",
        "Tr0ub4dor&3-plus",
        "alice-pass-123",
        "mauve kettle orbit",
        "ünïcödé-pässwörd",
    ],
)
def test_ordinary_passwords_pass(password):
    assert problem(password, "alice") is None


def test_the_list_is_data_in_the_repository_with_hundreds_of_entries():
    words = common_passwords()
    assert len(words) >= 300
    assert {"123456", "password", "qwerty", "iloveyou", "admin"} <= words
    assert password_policy.LIST_FILE.is_file()
    assert MIN_LENGTH == 10


def test_the_message_names_the_field_and_reads_as_a_sentence():
    with pytest.raises(InvalidField) as caught:
        check_password("password12345", "alice", "new_password")
    assert caught.value.field == "new_password"
    assert str(caught.value).startswith("new_password is a common password")


async def test_accounts_cannot_be_made_with_a_weak_password(tmp_path):
    from backend.adapters.sqlite_registry import SqliteRegistry

    registry = SqliteRegistry(tmp_path / "registry.db")
    await registry.start()
    try:
        auth = AuthService(registry)
        for weak in ("password", " " * 12, "carol-ops", "qwerty12345"):
            with pytest.raises(InvalidField, match="password"):
                await auth.add_user("carol-ops", "sysadmin", weak)
        assert await registry.list_users() == []
    finally:
        await registry.close()
