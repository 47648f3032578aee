"""The refusals the services share, each with the HTTP status it becomes (`backend.http.errors`).

What a store or broker cannot do (`NotFound`, `Conflict`, `Unavailable`) is part of the ports'
contract and lives in `backend.ports`; refusals of one service alone (`BatchRejected`,
`FormRejected`, `ChatRefused`, `TooManyAttempts`) live beside that service.
"""

from __future__ import annotations


class Unauthorized(Exception):
    """No valid credentials (HTTP 401)."""


class Forbidden(Exception):
    """Valid credentials, but the role may not do this (HTTP 403)."""


class PasswordChangeRequired(Forbidden):
    """The session is valid, but its user must choose a new password first (HTTP 403)."""

    def __init__(self, username: str) -> None:
        super().__init__(
            f"password change required: {username} must choose a new password before anything else "
            "(POST /api/v1/me/password with current_password and new_password; from a shell: "
            "tasker passwd)"
        )
        self.username = username


class AccountDisabled(Forbidden):
    """The password was right but the account is disabled (HTTP 403)."""


class InvalidField(ValueError):
    """A request field has the wrong type or form (HTTP 400); `field` names it."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field} {reason}")
        self.field = field
        self.reason = reason
