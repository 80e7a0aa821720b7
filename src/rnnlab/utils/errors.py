"""User-facing errors: one clear line on stderr and a non-zero exit, never a torch traceback."""

from __future__ import annotations


class UserError(Exception):
    """A mistake in the user's data or configuration; the message names the problem and the fix."""


class ConfigError(UserError, ValueError):
    """A configuration value that cannot work."""


class DataError(UserError, ValueError):
    """Input data that cannot be trained or evaluated on."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (library errors can span many), for quoting
    inside a one-line user error; the exception's type name when it has no message."""
    text = str(exc).strip()
    return text.splitlines()[0].rstrip(".") if text else type(exc).__name__


def find_user_error(exc: BaseException) -> UserError | None:
    """Return the UserError behind ``exc``, looking through wrappers such as Hydra's
    InstantiationException, which re-raise with ``from``."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, UserError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def root_cause(exc: BaseException) -> BaseException:
    """The innermost exception behind ``exc`` (past wrappers such as Hydra's
    InstantiationException), which says what actually went wrong."""
    seen = {id(exc)}
    while exc.__cause__ is not None and id(exc.__cause__) not in seen:
        exc = exc.__cause__
        seen.add(id(exc))
    return exc
