"""Write the configuration reference page from the YAML files under ``conf/``.

    python scripts/config_reference.py          # rewrite docs/reference/configuration.md
    python scripts/config_reference.py --check  # exit 1 when that page is out of date

Every description on the page is a YAML comment: the comment block at the top of a file describes
the option, the comment on the lines directly above a key (or at the end of its line) describes
the key. The page opens with "Groups at a glance": a row per config group, its options linked to
their sections, each with the first sentence of its file comment. To change the page, change the
comments in ``conf/`` and run this script again.

PyYAML's composer (installed with omegaconf) gives the line and column of every key and value, so
values are shown exactly as written and comments are read from the source lines around them; no
extra YAML library is needed for the comments.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "conf"
OUTPUT = ROOT / "docs" / "reference" / "configuration.md"
COMMAND = "python scripts/config_reference.py"
GLOBAL_PACKAGE = "_global_"
MISSING_VALUE = "???"


@dataclass(frozen=True)
class Key:
    """One row of an option's table; a mapping with a comment of its own gets a row too."""

    path: str  # dotted, as written on the command line
    default: str | None  # as written in the YAML; None for a mapping (its keys follow)
    description: str


@dataclass(frozen=True)
class DefaultsEntry:
    text: str  # e.g. "override /data: adding"
    description: str


@dataclass(frozen=True)
class ConfigFile:
    group: str  # "model/encoder"; "" for a top-level command config
    name: str
    source: str  # path shown on the page, e.g. "conf/model/encoder/rnn.yaml"
    package: str
    header: list[str]  # the file-level comment, one entry per line, "#" removed
    defaults: list[DefaultsEntry]
    keys: list[Key]


# -- reading ------------------------------------------------------------------------------------


def find_config_files(conf_dir: Path) -> list[Path]:
    """Every YAML file under ``conf_dir``, top-level ones first, then by group and name."""
    files = [*conf_dir.rglob("*.yaml"), *conf_dir.rglob("*.yml")]
    return sorted(
        files,
        key=lambda path: (
            len(path.relative_to(conf_dir).parts) > 1,
            path.relative_to(conf_dir).parent.as_posix(),
            path.stem,
        ),
    )


def comment_text(line: str) -> str | None:
    """The text of a comment-only line (without "#" and one space), or None for any other line."""
    stripped = line.strip()
    if not stripped.startswith("#"):
        return None
    text = stripped[1:]
    return text[1:] if text.startswith(" ") else text


def header_comment(lines: list[str]) -> tuple[list[str], str | None, int]:
    """The comment block at the top of a file: its lines, its ``@package`` and where it ends.

    The block ends at the first blank or non-comment line; Hydra reads ``# @package`` there too.
    """
    header: list[str] = []
    package = None
    end = 0
    while end < len(lines) and (text := comment_text(lines[end])) is not None:
        if match := re.fullmatch(r"@package\s+(\S+)\s*", text):
            package = match.group(1)
        else:
            header.append(text.rstrip())
        end += 1
    return header, package, end


def package_of(group: str, declared: str | None) -> str:
    """Where a config's keys land: Hydra's default is the group path, dotted."""
    group_package = group.replace("/", ".")
    if declared is None:
        return group_package or GLOBAL_PACKAGE
    return declared.replace("_group_", group_package)


def comment_above(lines: list[str], line_no: int, first_free_line: int) -> str:
    """The comment lines directly above ``line_no`` (no blank line between), joined."""
    texts: list[str] = []
    row = line_no - 1
    while row >= first_free_line and (text := comment_text(lines[row])) is not None:
        texts.insert(0, text.strip())
        row -= 1
    return " ".join(text for text in texts if text)


def comment_after(line: str, column: int) -> str:
    """The comment at the end of ``line`` after ``column`` (the end of a key or its value)."""
    rest = line[column:].lstrip().removeprefix(":").lstrip()
    return rest[1:].strip() if rest.startswith("#") else ""


def key_description(
    lines: list[str], key: yaml.Node, value: yaml.Node, first_free_line: int
) -> str:
    # a block mapping or list starts on the next line: a comment on the key's line is the key's
    end = value.end_mark if is_inline(value) else key.end_mark
    return joined_comments(
        comment_above(lines, key.start_mark.line, first_free_line),
        comment_after(lines[end.line], end.column),
    )


def joined_comments(above: str, after: str) -> str:
    return "; ".join(part for part in (above, after) if part)


def is_inline(node: yaml.Node) -> bool:
    """A scalar, [list] or {mapping} written where it starts, not as an indented block."""
    return isinstance(node, yaml.ScalarNode) or bool(node.flow_style)


def written_value(node: yaml.Node, text: str) -> str:
    """A value as written in the file; block lists and mappings compacted to one line."""
    if is_inline(node):
        written = text[node.start_mark.index : node.end_mark.index]
        return re.sub(r"\s*\n\s*", " ", written).strip() or "null"
    if isinstance(node, yaml.SequenceNode):
        return "[" + ", ".join(written_value(item, text) for item in node.value) + "]"
    pairs = (
        f"{written_value(key, text)}: {written_value(value, text)}" for key, value in node.value
    )
    return "{" + ", ".join(pairs) + "}"


def is_section(node: yaml.Node) -> bool:
    """A block mapping with keys: its keys get rows of their own."""
    return isinstance(node, yaml.MappingNode) and not is_inline(node) and bool(node.value)


def collect_keys(
    pairs: list[tuple[yaml.Node, yaml.Node]],
    prefix: str,
    lines: list[str],
    text: str,
    first_free_line: int,
) -> Iterator[Key]:
    for key, value in pairs:
        path = f"{prefix}.{key.value}" if prefix else str(key.value)
        description = key_description(lines, key, value, first_free_line)
        if is_section(value):
            if description:
                yield Key(path, None, description)
            yield from collect_keys(value.value, path, lines, text, first_free_line)
        else:
            yield Key(path, written_value(value, text), description)


def defaults_entries(
    node: yaml.SequenceNode, lines: list[str], text: str, first_free_line: int
) -> list[DefaultsEntry]:
    """A ``defaults`` list: each entry as written ("override /data: adding") and its comment."""
    entries = []
    for item in node.value:
        if isinstance(item, yaml.MappingNode):
            entry = ", ".join(
                f"{written_value(key, text)}: {written_value(value, text)}"
                for key, value in item.value
            )
            end = item.value[-1][1].end_mark  # a block mapping itself ends on the next line
        else:
            entry = written_value(item, text)
            end = item.end_mark
        description = joined_comments(
            comment_above(lines, item.start_mark.line, first_free_line),
            comment_after(lines[end.line], end.column),
        )
        entries.append(DefaultsEntry(entry, description))
    return entries


def read_config(path: Path, conf_dir: Path) -> ConfigFile:
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    header, declared_package, header_end = header_comment(lines)
    relative = path.relative_to(conf_dir)
    group = relative.parent.as_posix() if len(relative.parts) > 1 else ""
    package = package_of(group, declared_package)
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    defaults: list[DefaultsEntry] = []
    keys: list[Key] = []
    if isinstance(root, yaml.MappingNode):
        prefix = "" if package == GLOBAL_PACKAGE else package
        pairs = []
        for key, value in root.value:
            if key.value == "defaults" and isinstance(value, yaml.SequenceNode):
                defaults = defaults_entries(value, lines, text, header_end)
            else:
                pairs.append((key, value))
        keys = list(collect_keys(pairs, prefix, lines, text, header_end))
    return ConfigFile(
        group, path.stem, f"{conf_dir.name}/{relative.as_posix()}", package, header, defaults, keys
    )


def read_all(conf_dir: Path) -> list[ConfigFile]:
    return [read_config(path, conf_dir) for path in find_config_files(conf_dir)]


# -- writing ------------------------------------------------------------------------------------


def escape_prose(text: str, in_table: bool = False) -> str:
    """Markdown-safe prose; `code spans` in comments stay code.

    Python-Markdown (MkDocs) never splits a table cell inside a code span, and keeps a backslash
    written there, so pipes are escaped outside code spans only.
    """
    pieces = re.split(r"(`+[^`]*?`+)", text)
    for index in range(0, len(pieces), 2):  # the even pieces are outside code spans
        piece = pieces[index].replace("\\", "\\\\").replace("*", "\\*")
        piece = piece.replace("<", "&lt;").replace(">", "&gt;")
        pieces[index] = piece.replace("|", "\\|") if in_table else piece
    return "".join(pieces)


def code_span(text: str) -> str:
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    padding = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{padding}{text}{padding}{fence}"


def anchor(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]+", "-", text).strip("-").lower()


def option_title(config: ConfigFile) -> str:
    """How the page names an option ("model/encoder=rnn") or a command config ("train.yaml");
    its section's anchor is ``anchor`` of this ("model-encoder-rnn", "train-yaml")."""
    return f"{config.group}={config.name}" if config.group else f"{config.name}.yaml"


def group_anchor(group: str) -> str:
    return f"group-{anchor(group)}"


def first_sentence(header: list[str]) -> str:
    """The first sentence of a file comment's first prose paragraph (the whole paragraph when no
    sentence ends in it). A sentence ends at a period followed by the end or by a space and a
    capital letter, outside parentheses, brackets and code spans (so "Le et al. 2015" and
    "e.g. a" end none)."""
    prose = next(
        (" ".join(block) for is_example, block in comment_blocks(header) if not is_example), ""
    )
    depth, in_code = 0, False
    for index, char in enumerate(prose):
        if char == "`":
            in_code = not in_code
        elif in_code:
            continue
        elif char in "([":
            depth += 1
        elif char in ")]":
            depth = max(0, depth - 1)
        elif char == "." and depth == 0:
            rest = prose[index + 1 :]
            if not rest or (rest.startswith(" ") and rest.lstrip()[:1].isupper()):
                return prose[: index + 1]
    return prose


def header_markdown(header: list[str]) -> list[str]:
    """A file's comment as Markdown: paragraphs of prose, and its indented lines (example
    commands) as code blocks."""
    out: list[str] = []
    for is_example, block in comment_blocks(header):
        out += fenced(block) if is_example else [escape_prose(" ".join(block))]
        out.append("")
    return out


def comment_blocks(header: list[str]) -> Iterator[tuple[bool, list[str]]]:
    """Runs of prose lines and of indented lines; an empty comment line ends a run."""
    block: list[str] = []
    block_is_example = False
    for line in header:
        is_example = line.startswith(" ")
        if block and (not line.strip() or is_example != block_is_example):
            yield block_is_example, block
            block = []
        if line.strip():
            block.append(line if is_example else line.strip())
            block_is_example = is_example
    if block:
        yield block_is_example, block


def fenced(lines: list[str]) -> list[str]:
    indent = min(len(line) - len(line.lstrip()) for line in lines)
    return ["```bash", *(line[indent:] for line in lines), "```"]


def default_cell(default: str | None) -> str:
    if default is None:
        return ""
    if default == MISSING_VALUE:
        return "*required*"
    return code_span(default)


def config_markdown(config: ConfigFile) -> list[str]:
    title = option_title(config)
    location = code_span(config.source)
    if config.group:
        location += f" · package {code_span(config.package)}"
    if config.group and config.package == GLOBAL_PACKAGE:
        location += " (its keys override the whole config)"
    out = [f"### {title} {{ #{anchor(title)} }}", "", location, ""]
    out += header_markdown(config.header)
    if config.defaults:
        out += ["Defaults list:", ""]
        for entry in config.defaults:
            description = f": {escape_prose(entry.description)}" if entry.description else ""
            out.append(f"- {code_span(entry.text)}{description}")
        out.append("")
    if not config.keys:
        out += ["No keys of its own.", ""]
        return out
    out += ["| Key | Default | Description |", "| --- | --- | --- |"]
    for key in config.keys:
        cells = (
            code_span(key.path),
            default_cell(key.default),
            escape_prose(key.description, in_table=True),
        )
        out.append("| " + " | ".join(cells) + " |")
    return [*out, ""]


def overview_markdown(configs: list[ConfigFile]) -> list[str]:
    """ "Groups at a glance": a row per group, its options linked to their sections, each with
    the first sentence of its file comment."""
    out = [
        "## Groups at a glance { #groups-at-a-glance }",
        "",
        "Every config group and its options, each linked to its section below with the first",
        "sentence of its file comment.",
        "",
        "| Group | Options |",
        "| --- | --- |",
    ]
    for group in sorted({config.group for config in configs if config.group}):
        options = []
        for option in (config for config in configs if config.group == group):
            summary = escape_prose(first_sentence(option.header), in_table=True)
            link = f"[{code_span(option.name)}](#{anchor(option_title(option))})"
            options.append(f"{link}: {summary}" if summary else link)
        out.append(f"| [{code_span(group)}](#{group_anchor(group)}) | {'<br>'.join(options)} |")
    return [*out, ""]


def render_reference(conf_dir: Path) -> str:
    configs = read_all(conf_dir)
    out = [
        "# Configuration reference",
        "",
        f"Generated from the YAML files under `conf/` by `{COMMAND}`: do not",
        "edit this page; change the comments in `conf/` and run that command again.",
        "",
        "Keys are written as on the command line (`model.encoder.hidden_size=128`); an option of",
        "a group is chosen with `GROUP=NAME` (`model/encoder=lstm_fcn`). A default of `${...}` is",
        "an interpolation, resolved when the run starts; *required* keys (`???` in the YAML) must",
        "be given or are filled in from the data.",
        "",
    ]
    out += overview_markdown(configs)
    out += ["## Commands { #commands }", ""]
    for config in (config for config in configs if not config.group):
        out += config_markdown(config)
    groups = sorted({config.group for config in configs if config.group})
    for group in groups:
        options = [config for config in configs if config.group == group]
        names = ", ".join(code_span(option.name) for option in options)
        out += [
            f"## {group} {{ #{group_anchor(group)} }}",
            "",
            f"Options: {names}; choose one with {code_span(group + '=NAME')}.",
            "",
        ]
        for option in options:
            out += config_markdown(option)
    return "\n".join(out).rstrip("\n") + "\n"


def write_reference(conf_dir: Path, output: Path) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(render_reference(conf_dir), encoding="utf-8")


def is_current(conf_dir: Path, output: Path) -> bool:
    return output.is_file() and output.read_text(encoding="utf-8") == render_reference(conf_dir)


def shown(path: Path) -> str:
    """A path inside the checkout relative to its root, as the developer types it there."""
    resolved = path.resolve()
    return str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else str(path)


def regenerate_command(conf_dir: Path, output: Path) -> str:
    options = [f"--conf-dir {conf_dir}"] if conf_dir.resolve() != CONF_DIR else []
    options += [f"--output {output}"] if output.resolve() != OUTPUT else []
    return " ".join([COMMAND, *options])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conf-dir", type=Path, default=CONF_DIR)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 when the page differs from what it would write",
    )
    args = parser.parse_args(argv)
    if args.check:
        if is_current(args.conf_dir, args.output):
            return 0
        print(
            f"{shown(args.output)} is out of date with {shown(args.conf_dir)}: run "
            f"{regenerate_command(args.conf_dir, args.output)}",
            file=sys.stderr,
        )
        return 1
    write_reference(args.conf_dir, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
