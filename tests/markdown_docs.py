"""Reading the manual's Markdown: fenced blocks, and the rnnlab command lines in them and in
inline code spans, as tests/test_doc_commands.py and tests/test_doc_examples.py check them.

Placeholders in documented commands, treated narrowly (``Command.skipped`` lists what was left
out, so a failure message shows it):

- ``<...>`` (``<date_time>``, ``<run>``, ``<that best.ckpt>``) inside an argument is replaced by
  the dummy path segment ``PLACEHOLDER``: ``ckpt_path=<run>/checkpoints/best.ckpt`` is checked as
  ``ckpt_path=doc-placeholder/checkpoints/best.ckpt``;
- an argument that is nothing but a ``<...>`` (``<same overrides>``) or ``...`` is skipped;
- a value that is ``...`` (``data.file=...``) becomes ``PLACEHOLDER``;
- an argument wholly in square brackets (``[output=sample.txt]``) is optional and is checked
  without its brackets; a Hydra list (``runs=[a,b]``) is a value, not an optional part;
- upper-case positional names (``DIR``) need no rule: argparse takes them as strings;
- a console script's bare name in an inline span (``rnnlab-generate``, no arguments) names the
  command and is not run.

Everything else is checked as written: ``\\`` continuations are joined, ``#`` comments dropped
(shell quoting respected), and the arguments end at a shell operator (``|``, ``>``, ``&&``...).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLACEHOLDER = "doc-placeholder"

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_ANGLE = re.compile(r"<[^\s<>][^<>\n]*>")
_INLINE = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.DOTALL)
_PYTHON = re.compile(r"^(?:\S*/)?python(?:3(?:\.\d+)?)?$")
_SCRIPT = re.compile(r"^rnnlab-[a-z_]+$")
# a line that runs an entry point, before any shell splitting
_RUNS = re.compile(r"python\S*\s+-m\s+rnnlab|(?:^|\s)rnnlab-[a-z]")
_SHELL_OPERATORS = {"|", "||", "&&", ";", "&", ">", ">>", "<", "2>", "2>&1", "&>"}


def doc_pages() -> list[Path]:
    """README.md and every page of the manual, in a stable order."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


@dataclass(frozen=True)
class Block:
    """A fenced code block: the line of its first content line, its info string, its lines."""

    line: int
    info: str
    lines: tuple[str, ...]

    @property
    def title(self) -> str | None:
        found = re.search(r'title="([^"]*)"', self.info)
        return found.group(1) if found else None

    @property
    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


@dataclass(frozen=True)
class Command:
    """One documented command line that runs an rnnlab entry point."""

    file: str
    line: int
    text: str  # as documented, continuations joined
    program: str  # "rnnlab.train" for python -m, or the console script "rnnlab-train"
    args: tuple[str, ...]  # after the placeholder rules
    skipped: tuple[str, ...] = field(default=())  # placeholder arguments left out
    inline: bool = False
    error: str | None = None  # the line could not be split as a shell command

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    def describe(self) -> str:
        skipped = f" (placeholders skipped: {' '.join(self.skipped)})" if self.skipped else ""
        return f"{self.where}: {self.text}{skipped}"


def fenced_blocks(markdown: str) -> list[Block]:
    return _scan(markdown)[0]


def _scan(markdown: str) -> tuple[list[Block], list[tuple[int, str]]]:
    """Fenced blocks, and the paragraphs outside them (first line number, text)."""
    blocks: list[Block] = []
    paragraphs: list[tuple[int, str]] = []
    lines = markdown.splitlines()
    paragraph: list[str] = []
    start = 0
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening is None:
            if lines[i].strip():
                if not paragraph:
                    start = i + 1
                paragraph.append(lines[i])
            elif paragraph:
                paragraphs.append((start, "\n".join(paragraph)))
                paragraph = []
            i += 1
            continue
        if paragraph:
            paragraphs.append((start, "\n".join(paragraph)))
            paragraph = []
        indent, fence = len(opening["indent"]), opening["fence"]
        first_line = i + 2  # 1-based number of the line after the opening fence
        body: list[str] = []
        i += 1
        while i < len(lines):
            closing = _FENCE.match(lines[i])
            if (
                closing is not None
                and closing["fence"][0] == fence[0]
                and len(closing["fence"]) >= len(fence)
                and not closing["info"].strip()
            ):
                break
            # the block's indentation (a block inside a list item) is not part of its text
            body.append(lines[i][indent:] if not lines[i][:indent].strip() else lines[i].lstrip())
            i += 1
        blocks.append(Block(first_line, opening["info"].strip(), tuple(body)))
        i += 1  # past the closing fence
    if paragraph:
        paragraphs.append((start, "\n".join(paragraph)))
    return blocks, paragraphs


def _logical_lines(block: Block) -> list[tuple[int, str]]:
    """The block's lines with ``\\`` continuations joined, each with its first line's number."""
    joined: list[tuple[int, str]] = []
    pending: list[str] = []
    first = 0
    for offset, raw in enumerate(block.lines):
        if not pending:
            first = block.line + offset
        if raw.rstrip().endswith("\\"):
            pending.append(raw.rstrip()[:-1].strip())
            continue
        pending.append(raw.strip())
        joined.append((first, " ".join(p for p in pending if p)))
        pending = []
    if pending:
        joined.append((first, " ".join(p for p in pending if p)))
    return joined


def parse_command(text: str, file: str, line: int, inline: bool = False) -> Command | None:
    """The rnnlab command in one logical line of shell, or None when it runs none."""
    if not _RUNS.search(text):
        return None
    try:
        tokens = shlex.split(_ANGLE.sub(PLACEHOLDER, text), comments=True)
    except ValueError as exc:
        return Command(file, line, text, "?", (), inline=inline, error=f"cannot split: {exc}")
    for i, token in enumerate(tokens):
        module = tokens[i + 2] if len(tokens) > i + 2 and tokens[i + 1] == "-m" else ""
        if _PYTHON.match(token) and module.startswith("rnnlab"):
            program, start = module, i + 3
            break
        if _SCRIPT.match(token):
            program, start = token, i + 1
            break
    else:
        return None
    if inline and _SCRIPT.match(program) and len(tokens) == start:
        return None  # a console script's name in prose, not a command
    # the <...> each token stands for, in order (those of a trailing comment are never reached)
    originals = iter(_ANGLE.findall(text))
    written = [[next(originals, PLACEHOLDER) for _ in range(t.count(PLACEHOLDER))] for t in tokens]
    args: list[str] = []
    skipped: list[str] = []
    for token, standing_for in zip(tokens[start:], written[start:], strict=True):
        if token in _SHELL_OPERATORS:
            break
        if token in (PLACEHOLDER, "..."):
            skipped.append(standing_for[0] if standing_for else token)
            continue
        optional = re.fullmatch(r"\[([^\[\]=]+=.*)\]", token)
        if optional:
            token = optional.group(1)
        key, equals, value = token.partition("=")
        if equals and value == "...":
            token = f"{key}={PLACEHOLDER}"
        args.append(token)
    return Command(file, line, text, program, tuple(args), tuple(skipped), inline)


def extract_commands(markdown: str, file: str) -> list[Command]:
    """Every rnnlab command in fenced blocks and inline code spans, in line order."""
    blocks, paragraphs = _scan(markdown)
    found: list[Command] = []
    for block in blocks:
        for line, text in _logical_lines(block):
            command = parse_command(text, file, line)
            if command is not None:
                found.append(command)
    for start, paragraph in paragraphs:
        for span in _INLINE.finditer(paragraph):
            content = " ".join(span.group(2).split())  # a span may wrap across lines
            line = start + paragraph.count("\n", 0, span.start())
            command = parse_command(content, file, line, inline=True)
            if command is not None:
                found.append(command)
    return sorted(found, key=lambda c: c.line)


def page_commands(path: Path) -> list[Command]:
    return extract_commands(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))


def command_after(path: Path, line: int) -> Command:
    """The first rnnlab command documented after ``line`` of ``path``."""
    following = [c for c in page_commands(path) if c.line > line]
    assert following, f"{path.relative_to(ROOT)}: no rnnlab command after line {line}"
    return following[0]
