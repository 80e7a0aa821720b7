"""Reading command-line overrides as Hydra will, refusing the two ways its grammar surprises
people who type text values (prompts above all): characters it takes only inside quotes (any
non-ASCII letter, most punctuation) fail with a raw lexer error, and whitespace around an
unquoted value is dropped without a word. Each ends in one line naming the key and the quoting
that works."""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING

from rnnlab.utils.errors import ConfigError, first_line

if TYPE_CHECKING:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import Override

# How Hydra's lexer starts the message it points into with a caret line.
_LEXER_ERROR = "LexerNoViableAltException: "
_QUOTES_NOTE = "(Hydra's quotes inside the shell's)"


def parse_overrides(args: list[str]) -> list[Override]:
    """The parsed overrides; a ConfigError naming the override and the fix for one that Hydra
    cannot parse or would silently change."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    parsed = []
    for arg in args:  # one at a time, so the message can name the one at fault
        try:
            [override] = parser.parse_overrides([arg])
        except OverrideParseException as exc:
            raise ConfigError(_unparsable(parser, arg, exc)) from exc
        _refuse_stripped_whitespace(parser, override, arg)
        parsed.append(override)
    return parsed


def quoted(parser: OverridesParser, arg: str) -> str | None:
    """``arg`` with its value in Hydra's quotes, written for a POSIX shell, when that form
    parses back to exactly the value typed; otherwise None."""
    key, sep, value = arg.partition("=")
    if not sep:
        return None
    for quote in ('"', "'"):
        escaped = value.replace(quote, "\\" + quote)
        candidate = f"{key}={quote}{escaped}{quote}"
        try:
            [override] = parser.parse_overrides([candidate])
        except Exception:  # a value Hydra cannot read even quoted
            continue
        if override.value() == value:
            return shlex.quote(candidate)
    return None


def as_override(key: str, value: str) -> str:
    """``key=value`` as a user types it in a shell so that Hydra reads exactly the text
    ``value`` (a column name with spaces, accents or digits only needs quotes)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    plain = f"{key}={value}"
    try:
        [override] = parser.parse_overrides([plain])
        if override.value() == value:
            return shlex.quote(plain)
    except Exception:  # Hydra's grammar rejects it unquoted
        pass
    return quoted(parser, plain) or shlex.quote(plain)


def _offending_character(arg: str, exc: Exception) -> str | None:
    """The character Hydra's lexer stopped at (it points at it with a caret line)."""
    lines = str(exc).splitlines()
    if len(lines) < 2 or not lines[0].startswith(_LEXER_ERROR) or "^" not in lines[1]:
        return None
    position = lines[1].index("^") - len(_LEXER_ERROR)
    return arg[position] if 0 <= position < len(arg) else None


def _unparsable(parser: OverridesParser, arg: str, exc: Exception) -> str:
    fix = quoted(parser, arg)
    character = _offending_character(arg, exc)
    if fix is None:
        return f"cannot parse the override {arg}: {first_line(exc)}"
    if character is None:  # the grammar's structure (brackets, commas), not one character
        return (
            f"cannot parse the override {arg}: {first_line(exc)}; fix its brackets or commas, "
            f"or if the value is text, type it as {fix} {_QUOTES_NOTE}"
        )
    return (
        f"cannot parse the override {arg}: Hydra's override grammar takes {character!r} only "
        f"inside quotes; type it as {fix} {_QUOTES_NOTE}"
    )


def _refuse_stripped_whitespace(parser: OverridesParser, override: Override, arg: str) -> None:
    """Hydra strips whitespace around an unquoted value (``prompt=def `` gives 'def'); where
    the value is text and loses some, refuse rather than run with another value."""
    from hydra.core.override_parser.types import ValueType

    key, _, raw = arg.partition("=")
    if override.value_type != ValueType.ELEMENT or not isinstance(override.value(), str):
        return
    if raw == raw.strip() or override.value() != raw.strip():
        return  # nothing to strip, or the value was quoted (whitespace outside quotes is noise)
    ends = [
        side
        for side, kept in (("leading", raw.lstrip()), ("trailing", raw.rstrip()))
        if kept != raw
    ]
    fix = quoted(parser, arg)
    how = f"type it as {fix} {_QUOTES_NOTE}" if fix else "quote the value"
    raise ConfigError(
        f"{key}={raw!r} would lose its {' and '.join(ends)} whitespace (Hydra strips it from "
        f"unquoted values); {how}"
    )
