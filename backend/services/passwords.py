"""Salted, slow password hashing (scrypt from hashlib) and random identifiers."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

# scrypt cost: ~16 MiB and tens of milliseconds per hash, so guessing is slow but login is not.
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
_DKLEN = 32
_BASE32 = "abcdefghijklmnopqrstuvwxyz234567"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """`scrypt$n$r$p$salt$hash`: everything needed to verify later, nothing to recover the password."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=_DKLEN, maxmem=2**26)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """True when `password` matches the stored hash; compares in constant time."""
    try:
        scheme, n, r, p, salt, expected = stored.split("$")
        if scheme != "scrypt":
            return False
        digest = hashlib.scrypt(
            password.encode(),
            salt=_unb64(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=_DKLEN,
            maxmem=2**26,
        )
        return hmac.compare_digest(digest, _unb64(expected))
    except (ValueError, TypeError):
        return False


def random_base32(length: int) -> str:
    """`length` random lowercase base32 characters (a-z, 2-7): URL-safe and unambiguous."""
    return "".join(secrets.choice(_BASE32) for _ in range(length))


def new_password() -> str:
    """A generated password for a new account (about 120 bits)."""
    return secrets.token_urlsafe(15)


def token_digest(token: str) -> str:
    """What is stored of a session token or an ingest key secret: its SHA-256.

    These are long random strings, so a fast hash is enough; only passwords need a slow one.
    """
    return hashlib.sha256(token.encode()).hexdigest()
