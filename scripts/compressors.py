"""General-purpose compressors as anchors for the character language model: the conditional code
length of the test part given the training and validation parts, in bits per character.

    python scripts/compressors.py                  # the table for experiment=charlm
    python scripts/compressors.py --write-docs     # also write it into docs/results.md
    python scripts/compressors.py data.file=my.txt # another corpus, split as rnnlab splits it

The parts are those ``experiment=charlm`` trains, validates and tests on: the config is composed
(with any overrides given), its TextDataModule splits the corpus, and the script cuts the text
at the lengths of the DataModule's parts, checking that they encode to the same ids. For each
compressor C, on the UTF-8 bytes,

    bits per character = 8 × (|C(train + val + test)| − |C(train + val)|) / test characters

(characters, not bytes); and the same given the train part alone, the text the language model
learns from. A compressor that is not installed is skipped with one line naming it and its
Debian package. The script also prints the share of the test part's 64-character strings (one at
every offset) that occur verbatim in the train part, and in train + val: what long-range copying
can exploit.

``--write-docs`` replaces the lines between ``<!-- BEGIN compressors:charlm -->`` and
``<!-- END compressors:charlm -->`` in docs/results.md; it refuses to write a table with a
compressor missing.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from docs_tables import read_block, write_block

# the strings the de-duplication looks up: long enough that finding one is copying
from rnnlab.data.dedup import WIDTH, strings_of

ROOT = Path(__file__).resolve().parents[1]
RESULTS_PAGE = ROOT / "docs" / "results.md"
MARKER = "compressors:charlm"


class CompressorFailed(Exception):
    """A compressor that is installed exited with an error."""


@dataclass(frozen=True)
class Compressor:
    """A command that compresses its standard input: to its standard output, or, with
    ``archive`` set, into an archive file named after the arguments (7-Zip cannot write a 7z
    archive to a pipe)."""

    name: str
    arguments: tuple[str, ...]  # after the program; the table shows them as given here
    package: str  # the Debian package that provides the program
    version_arguments: tuple[str, ...]
    version_pattern: str  # its first group is the version in the version command's output
    archive: bool = False

    @property
    def program(self) -> str:
        return self.arguments[0]

    @property
    def command(self) -> str:
        return " ".join(self.arguments)

    def available(self) -> bool:
        return shutil.which(self.program) is not None

    def size(self, data: bytes) -> int:
        """The number of bytes ``data`` compresses to."""
        if not self.archive:
            return len(self._run([*self.arguments, "-c"], data))
        with tempfile.TemporaryDirectory(prefix="rnnlab-compress-") as folder:
            archive = Path(folder) / "text.7z"
            self._run([*self.arguments, "-bso0", "-bsp0", "-sitext", str(archive)], data)
            return archive.stat().st_size

    def _run(self, argv: list[str], data: bytes) -> bytes:
        done = subprocess.run(argv, input=data, capture_output=True, check=False)
        if done.returncode != 0:
            said = done.stderr.decode(errors="replace").strip().splitlines()
            raise CompressorFailed(
                f"{' '.join(argv)} exited with {done.returncode}"
                + (f": {said[-1]}" if said else "")
            )
        return done.stdout

    def version(self) -> str:
        """``name version`` as the program reports it (stdout and stderr both read)."""
        done = subprocess.run(
            [self.program, *self.version_arguments],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            check=False,
        )
        found = re.search(self.version_pattern, done.stdout + done.stderr)
        return f"{self.name} {found.group(1) if found else '(version unknown)'}"


COMPRESSORS = (
    Compressor("xz", ("xz", "-9e"), "xz-utils", ("--version",), r"xz \(XZ Utils\) (\S+)"),
    Compressor("bzip2", ("bzip2", "-9"), "bzip2", ("--version",), r"Version ([^,\s]+)"),
    Compressor(
        "zstd", ("zstd", "--ultra", "-22", "--long"), "zstd", ("--version",), r"\bv(\d[\d.]*)"
    ),
    # 7-Zip's own default PPMd settings (order 6, 16 MiB): -mx=9 (order 32) codes this corpus
    # 7 % longer
    Compressor(
        "PPMd (7-Zip)",
        ("7z", "a", "-t7z", "-m0=PPMd"),
        "p7zip-full",
        (),
        r"7-Zip(?: \[\d+\])? (\S+)",
        archive=True,
    ),
)


@dataclass(frozen=True)
class Measured:
    compressor: str  # name and version
    command: str
    context_bytes: int  # |C(train + val)|
    whole_bytes: int  # |C(train + val + test)|
    bits_per_char: float  # of the test part given train + val
    bits_given_train: float  # of the test part given the train part alone


def conditional_bits(size: Callable[[bytes], int], context: str, test: str) -> tuple[int, int]:
    """``(|C(context)|, |C(context + test)|)`` in bytes, ``size`` compressing UTF-8 bytes."""
    return size(context.encode("utf-8")), size((context + test).encode("utf-8"))


def bits_per_character(context_bytes: int, whole_bytes: int, test_characters: int) -> float:
    """``8 × (|C(context + test)| − |C(context)|) / test characters``."""
    return 8 * (whole_bytes - context_bytes) / test_characters


def measure(compressors: Iterable[Compressor], parts: dict[str, str]) -> list[Measured]:
    """Each available compressor's conditional code length of the test part given train + val
    (and given train alone); one line on stderr for each one that is not installed."""
    test = parts["test"]
    rows = []
    for compressor in compressors:
        if not compressor.available():
            print(
                f"skipped: {compressor.name} ({compressor.command}): {compressor.program} is not "
                f"installed (Debian: apt-get install {compressor.package})",
                file=sys.stderr,
            )
            continue
        context_bytes, whole_bytes = conditional_bits(
            compressor.size, parts["train"] + parts["val"], test
        )
        given_train = conditional_bits(compressor.size, parts["train"], test)
        rows.append(
            Measured(
                compressor.version(),
                compressor.command,
                context_bytes,
                whole_bytes,
                bits_per_character(context_bytes, whole_bytes, len(test)),
                bits_per_character(*given_train, len(test)),
            )
        )
    return rows


def verbatim_share(train: str, test: str, width: int = WIDTH) -> tuple[int, int]:
    """How many of ``test``'s ``width``-character strings (one at every offset) occur verbatim
    in ``train``, and how many there are."""
    seen = set(strings_of(train, width))
    strings = strings_of(test, width)
    return sum(s in seen for s in strings), len(strings)


def verbatim_line(parts: dict[str, str]) -> str:
    """How much of the test part occurs verbatim in the train part, and in train + val."""
    counts = [
        verbatim_share(context, parts["test"])
        for context in (parts["train"], parts["train"] + parts["val"])
    ]
    strings = counts[0][1]
    if not strings:
        return f"Verbatim: the test part has no {WIDTH}-character string to look up."
    train, both = (f"{found:,} ({100 * found / strings:.1f} %)" for found, _ in counts)
    return (
        f"Verbatim: of the test part's {strings:,} {WIDTH}-character strings (one at every "
        f"offset), {train} occur verbatim in the train part, {both} in train + val."
    )


def charlm_parts(overrides: list[str]) -> tuple[str, dict[str, str]]:
    """Where the corpus came from, and its train, val and test parts as ``experiment=charlm``
    (with ``overrides``) splits it: cut at the lengths of the TextDataModule's parts, each
    checked to encode to the ids the DataModule holds for it."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.utils import instantiate

    from rnnlab.utils.config import config_dir

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["experiment=charlm", *overrides])
    GlobalHydra.instance().clear()
    # the n-gram baseline is not needed here: 0 skips fitting it
    data = instantiate(cfg.data, ngram_max_order=0)
    data.setup()
    text, where = data.source()
    parts, at = {}, 0
    for name in ("train", "val", "test"):
        parts[name] = text[at : at + len(data.ids[name])]
        at += len(data.ids[name])
        if not (data.vocab.compact_ids(parts[name]) == data.ids[name]).all():
            raise SystemExit(f"error: the {name} part cut from {where} is not the DataModule's")
    if at != len(text):
        raise SystemExit(f"error: the parts of {where} do not add up to the text")
    return where, parts


def table(rows: list[Measured]) -> list[str]:
    lines = [
        "| compressor | command | test bpc, given train + val | C(train + val), bytes "
        "| C(train + val + test), bytes | test bpc, given train only |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {r.compressor} | `{r.command}` | **{r.bits_per_char:.3f}** | {r.context_bytes:,} "
        f"| {r.whole_bytes:,} | {r.bits_given_train:.3f} |"
        for r in sorted(rows, key=lambda r: r.bits_per_char)
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--write-docs",
        action="store_true",
        help=f"also write the table into docs/results.md, between its {MARKER} markers",
    )
    parser.add_argument(
        "overrides", nargs="*", help="Hydra overrides of experiment=charlm (e.g. data.file=...)"
    )
    args = parser.parse_args(argv)
    if args.write_docs:
        if args.overrides:
            parser.error("--write-docs takes the default corpus: no overrides")
        read_block(RESULTS_PAGE.read_text(encoding="utf-8"), MARKER, "docs/results.md")
        missing = [c for c in COMPRESSORS if not c.available()]
        if missing:
            print(
                "error: --write-docs needs every compressor; not installed: "
                + ", ".join(f"{c.program} (apt-get install {c.package})" for c in missing),
                file=sys.stderr,
            )
            return 2
    from hydra.errors import HydraException

    from rnnlab.utils.errors import UserError, find_user_error, first_line

    try:
        where, parts = charlm_parts(args.overrides)
    except (HydraException, UserError, OSError) as exc:  # a bad override or corpus: one line
        print(f"error: {first_line(find_user_error(exc) or exc)}", file=sys.stderr)
        return 2
    test = parts["test"]
    try:
        rows = measure(COMPRESSORS, parts)
    except CompressorFailed as failed:
        print(f"error: {failed}", file=sys.stderr)
        return 2
    python = ".".join(map(str, sys.version_info[:3]))
    sizes = ", ".join(f"{name} {len(part):,}" for name, part in parts.items())
    notes = [
        f"Corpus: {where}; characters: {sizes} (the test part is "
        f"{len(test.encode('utf-8')):,} bytes of UTF-8)"
        + ("." if f"Python {python}" in where else f"; Python {python}."),
        "",
        verbatim_line(parts),
    ]
    block = "\n".join([*table(rows), "", *notes])
    print(block)
    if args.write_docs:
        write_block(RESULTS_PAGE, MARKER, block)
        print(f"wrote {RESULTS_PAGE}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
