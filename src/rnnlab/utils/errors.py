"""User-facing errors: one clear line on stderr and a non-zero exit, never a torch traceback."""

from __future__ import annotations

from collections.abc import Collection


class UserError(Exception):
    """A mistake in the user's data or configuration; the message names the problem and the fix."""


class ConfigError(UserError, ValueError):
    """A configuration value that cannot work."""


class DataError(UserError, ValueError):
    """Input data that cannot be trained or evaluated on."""


def choice(value: str, allowed: Collection[str], key: str, what: str) -> str:
    """``value`` when it is one of ``allowed``; otherwise a ConfigError naming the setting
    ``key`` (as the user writes it) and the values it takes."""
    if value not in allowed:
        raise ConfigError(f"unknown {what} {value!r}; set {key} to one of {', '.join(allowed)}")
    return value


class RunInterrupted(BaseException):
    """A run stopped by a signal (a scheduler's SIGTERM, Ctrl-C); the message says how to resume.

    A BaseException, like KeyboardInterrupt, so that no ``except Exception`` (a sweep's failed
    job handling, Hydra's job runner) swallows it and carries on with the next job."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum  # the shell's convention for death by a signal


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
