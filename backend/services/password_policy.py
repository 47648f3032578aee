"""What a password must be, in one place: every way a password is set goes through `problem()`
(`tasker users add/passwd`, `POST /api/v1/me/password`, the admin routes), and a login with a
password that no longer passes is told to change it.

A password is refused when it is:

- empty, only whitespace, or holds a control character (a newline cannot be typed back);
- shorter than `MIN_LENGTH` (10) characters, not counting spaces at either end;
- the username (any case, reversed, or with digits and symbols added at either end), or mostly
  the username (`admin-admin`, `alice2024bob`: fewer than 4 other letters);
- one of the commonest passwords (`common_passwords.txt`, about 500, in the repository), also
  with digits and symbols added at either end or in l33t spelling (`P@ssw0rd2024!`);
- trivial: a keyboard or alphabet run (`qwertyuiop`, `1234567890`), fewer than 4 different
  characters (`aaaaaaaaaa`, `ababababab`), or one short piece repeated (`abcdeabcde`).

Ten characters rather than NIST's eight: the list cannot hold every guessable word, and two more
characters cost a person little. There is no rule about character classes: they make passwords
harder to remember without making them much harder to guess.
"""

from __future__ import annotations

import string
import unicodedata
from functools import cache
from pathlib import Path

MIN_LENGTH = 10
MAX_LENGTH = 1024
MIN_DISTINCT = 4
LIST_FILE = Path(__file__).with_name("common_passwords.txt")

_EDGES = string.digits + string.punctuation + " "
_LEET = str.maketrans(
    {"@": "a", "4": "a", "3": "e", "1": "i", "!": "i", "0": "o", "$": "s", "5": "s", "7": "t", "+": "t"}
)
_RUNS = (
    "01234567890",
    "abcdefghijklmnopqrstuvwxyz",
    "qwertyuiopasdfghjklzxcvbnm",
    "1234567890qwertyuiop",
    "1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik9ol0p",
    "qazwsxedcrfvtgbyhnujmikolp",
    "azertyuiopqsdfghjklmwxcvbn",
    "qwertzuiopasdfghjklyxcvbnm",
)


@cache
def common_passwords() -> frozenset[str]:
    """The list, lowercase. A missing file is an install fault, said loudly: a policy that
    silently stopped refusing `password1234` would be worse."""
    try:
        text = LIST_FILE.read_text(encoding="utf-8")
    except OSError as exc:
        raise RuntimeError(
            f"the list of common passwords is missing ({LIST_FILE}: {exc.strerror}); reinstall Tasker"
        ) from None
    return frozenset(line.strip().casefold() for line in text.splitlines() if line.strip() and not line.startswith("#"))


def _is_run(text: str) -> bool:
    return any(text in run or text in run[::-1] for run in _RUNS)


def _repeated(text: str) -> bool:
    """`text` is one piece shorter than MIN_LENGTH written out two or more times."""
    size = len(text)
    for period in range(1, size // 2 + 1):
        if size % period == 0 and text[:period] * (size // period) == text:
            return period < MIN_LENGTH
    return False


def problem(password: str, username: str = "") -> str | None:
    """What is wrong with `password` for `username`, said so that "password <reason>" reads as
    a sentence; None when it may be used."""
    if not isinstance(password, str):
        return "must be a string"
    if not password:
        return "is empty"
    if len(password) > MAX_LENGTH:
        return f"is longer than {MAX_LENGTH} characters"
    if not password.strip():
        return "is only whitespace"
    if any(unicodedata.category(c) == "Cc" for c in password):
        return "holds a control character (such as a newline or a tab)"
    core = password.strip()
    if len(core) < MIN_LENGTH:
        return (
            f"is too short: at least {MIN_LENGTH} characters, not counting spaces at either end "
            f"(this one has {len(core)})"
        )
    folded = core.casefold()
    trimmed = folded.strip(_EDGES)
    # The password as a guesser would write it: digits and symbols at either end dropped, l33t
    # spelling read back (both orders: "0p3r4t10ns99" is "operations" either way).
    variants = {trimmed, trimmed.translate(_LEET), folded.translate(_LEET), folded.translate(_LEET).strip(_EDGES)}
    name = username.strip().casefold()
    if name:
        if name in (folded, folded[::-1]):
            return "is the username"
        if name in variants:
            return "is the username with digits or symbols added"
        if len(name) >= 3 and any(
            name in v and len(v.replace(name, "").strip(_EDGES)) < MIN_DISTINCT for v in variants | {folded}
        ):
            return "is mostly the username"
    common = common_passwords()
    if folded in common:
        return "is one of the most common passwords"
    if not variants.isdisjoint(common):
        return "is a common password with digits or symbols added, or in l33t spelling"
    if len(set(folded)) < MIN_DISTINCT:
        return f"has fewer than {MIN_DISTINCT} different characters"
    if _is_run(folded) or _is_run(folded.strip(string.punctuation + " ")):
        return "is a keyboard or alphabet sequence"
    if _repeated(folded):
        return "is one short piece repeated"
    return None


RULES = (
    f"at least {MIN_LENGTH} characters; not the username, not a common password "
    "(even with digits or symbols added), not a keyboard run or a repeated piece"
)
"""The rules in one line, for prompts and the TUI."""
