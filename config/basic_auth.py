"""The credentials of Flower and the dashboard: ``user:password[,user2:password2]``.

Both serve everything they show to whoever passes HTTP basic authentication, and neither locks
an account out after failed attempts: a password is the only thing between the network and
every deployment's record. So each password must be at least :data:`MIN_PASSWORD_LENGTH`
characters long (the minimum OWASP's verification standard asks of a password, enough that
guessing over the network is hopeless for a random one). Errors name the setting, the pair's
position and the fix, never a user name or a password.
"""

from __future__ import annotations

MIN_PASSWORD_LENGTH = 12
FORMAT = "user:password[,user2:password2]"
GENERATE = "python3 -c 'import secrets; print(secrets.token_urlsafe(18))' makes one"


class BasicAuthError(ValueError):
    """The credentials are missing or too weak; the message says which setting and the fix."""


def check_pair(setting: str, pair: str, position: int, count: int) -> tuple[str, str]:
    """``pair`` (``user:password``, the ``position``-th of ``count``) split in two.

    BasicAuthError when the user or the password is empty, or the password too short.
    """
    which = f"the user:password pair {position} of {count}" if count > 1 else "the value"
    user, colon, password = pair.partition(":")
    if not colon or not user:
        raise BasicAuthError(f"{setting}: {which} is not user:password; set it to {FORMAT}")
    if not password:
        raise BasicAuthError(
            f"{setting}: {which} has an empty password; give every user a password of at least "
            f"{MIN_PASSWORD_LENGTH} characters ({GENERATE})"
        )
    if len(password) < MIN_PASSWORD_LENGTH:
        raise BasicAuthError(
            f"{setting}: {which} has a password shorter than {MIN_PASSWORD_LENGTH} characters; "
            f"use a longer one ({GENERATE})"
        )
    return user, password


def check_pairs(setting: str, pairs: list[str]) -> list[tuple[str, str]]:
    """Every ``user:password`` of ``pairs`` checked (see :func:`check_pair`)."""
    if not pairs:
        raise BasicAuthError(f"{setting} must be set to {FORMAT}")
    return [check_pair(setting, pair, i, len(pairs)) for i, pair in enumerate(pairs, start=1)]


def parse_basic_auth(setting: str, raw: str | None) -> list[tuple[str, str]]:
    """The (user, password) pairs of a comma-separated ``raw``, each checked.

    BasicAuthError, naming ``setting`` but no credential, when ``raw`` is missing, a pair is not
    ``user:password``, or a password is empty or shorter than :data:`MIN_PASSWORD_LENGTH`.
    """
    if not raw:
        raise BasicAuthError(f"{setting} must be set to {FORMAT}")
    return check_pairs(setting, raw.split(","))
