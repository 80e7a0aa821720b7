"""Text generation entry point: ``python -m rnnlab.generate ckpt_path=... prompt='...'``.

Restores a character language model and its vocabulary from a checkpoint (by the same safe
rules as ``rnnlab.eval``; any task whose model is a ``TextGenerator`` and data ``TextData``,
``rnnlab.capabilities``) and samples ``length`` characters (at most ``max_length``) after
``prompt``, carrying the recurrent state (one step per character). The prompt and each
character go to stdout as they are sampled, or to ``output``: into a temporary file beside it,
renamed over it at the end, so a reader never sees half a file.

Ctrl-C stops sampling and keeps what was sampled (on stdout, or renamed into ``output``). A
failure to write ``output`` is one line and exit status 2: found before sampling where the file
cannot be created at all (read-only folder, ``/proc``); after it (a full disk), the text is
printed to stdout instead, so nothing sampled is lost.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from pathlib import Path
from typing import TextIO

import torch
from omegaconf import DictConfig

from rnnlab.capabilities import TextData, TextGenerator
from rnnlab.checkpoint import load_checkpoint, restore
from rnnlab.run.command import command
from rnnlab.run.job import run_task
from rnnlab.sampling import check_prompt, check_sampling, check_seed, stream_text
from rnnlab.utils.errors import ConfigError, DataError, RunInterrupted, first_line
from rnnlab.utils.files import blocking_file
from rnnlab.utils.report import run_directory_line, shown

log = logging.getLogger(__name__)


def _check_output(output: Path, overwrite: bool) -> None:
    blocker = blocking_file(output.parent)
    if blocker is not None:
        raise DataError(f"cannot write {output}: {blocker} is a file; choose output=")
    if output.is_dir():
        raise DataError(f"output={output} is a directory; give a file path")
    if output.exists() and not overwrite:
        raise ConfigError(
            f"output={output} exists; choose another path or pass overwrite=true to replace it"
        )


class TextSink:
    """Where the sampled text goes as it comes: stdout, or a temporary file beside ``output``
    that ``finish`` renames over it. ``text`` keeps everything written, for the return value
    and for stdout when the file cannot be written."""

    def __init__(self, output: Path | None) -> None:
        self.output = output
        self.pieces: list[str] = []
        self.tmp: Path | None = None
        self.stream: TextIO = sys.stdout
        if output is not None:
            self.tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
            try:
                output.parent.mkdir(parents=True, exist_ok=True)
                self.stream = self.tmp.open("w", encoding="utf-8")
            except OSError as exc:  # before sampling: nothing is lost
                raise DataError(
                    f"cannot write output={output}: {exc.strerror or first_line(exc)}; "
                    "choose a writable output="
                ) from exc

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    def write(self, piece: str) -> None:
        self.pieces.append(piece)
        try:
            self.stream.write(piece)
            # the terminal shows each character as it is sampled, a file each finished line
            if self.output is None or "\n" in piece:
                self.stream.flush()
        except OSError as exc:
            raise self._failed(exc) from exc

    def finish(self) -> None:
        """End the text: a line break on stdout; the file flushed, synced and renamed over
        ``output``."""
        try:
            if self.output is None:
                self.stream.write("\n")
                self.stream.flush()
                return
            assert self.tmp is not None
            self.stream.flush()
            os.fsync(self.stream.fileno())
            self.stream.close()
            os.replace(self.tmp, self.output)
        except OSError as exc:
            raise self._failed(exc) from exc

    def _failed(self, exc: OSError) -> DataError:
        """The one line for a write that failed; a file's text goes to stdout instead."""
        reason = exc.strerror or first_line(exc)
        if self.output is None:
            return DataError(f"cannot write the text to stdout: {reason}")
        self.discard()
        print(self.text, flush=True)
        return DataError(
            f"cannot write output={self.output}: {reason}; the {len(self.text)} characters "
            "(prompt and sampled text) were printed to stdout instead"
        )

    def discard(self) -> None:
        """Remove the temporary file (a failed or abandoned write)."""
        if self.tmp is not None:
            with contextlib.suppress(OSError):
                self.stream.close()
            with contextlib.suppress(OSError):
                self.tmp.unlink(missing_ok=True)


def _interrupted(exc: BaseException, sink: TextSink, sampled: int, length: int) -> RunInterrupted:
    """The interruption of sampling, saying where the text so far was kept."""
    signum = exc.exit_code - 128 if isinstance(exc, RunInterrupted) else int(signal.SIGINT)
    name = signal.Signals(signum).name
    kept = "on stdout" if sink.output is None else f"in {shown(sink.output)}"
    return RunInterrupted(
        f"generation stopped by {name} after {sampled} of {length} characters; the prompt and "
        f"those characters are kept {kept}",
        signum,
    )


def _write_sample(cfg: DictConfig, model: TextGenerator, data: TextData, sink: TextSink) -> None:
    """Sample into ``sink``, stopping cleanly on an interruption with what was written kept."""
    vocab, prompt, length = data.vocab, str(cfg.prompt), int(cfg.length)
    assert vocab is not None  # restored with the model, from the checkpoint
    sampled = 0
    try:
        sink.write(prompt)
        characters = stream_text(
            model, vocab, prompt, length, float(cfg.temperature), int(cfg.top_k), int(cfg.seed)
        )
        with contextlib.closing(characters):
            for character in characters:
                sink.write(character)
                sampled += 1
    except (KeyboardInterrupt, RunInterrupted) as exc:
        sink.finish()
        raise _interrupted(exc, sink, sampled, length) from exc
    except BaseException:
        sink.discard()
        raise
    sink.finish()


def generate(cfg: DictConfig) -> str:
    """The prompt followed by ``cfg.length`` sampled characters; written to ``cfg.output``
    or printed, each character as it is sampled."""
    check_sampling(cfg.length, cfg.temperature, cfg.top_k, cfg.get("max_length"))
    check_seed(cfg.seed)
    output = Path(cfg.output) if cfg.get("output") else None
    if output is not None:
        _check_output(output, bool(cfg.get("overwrite")))
    _, datamodule, model = restore(
        load_checkpoint(cfg.ckpt_path), cfg.ckpt_path, cfg.get("user_classes")
    )
    try:
        device = torch.device(str(cfg.device))
        model.to(device)
    except (RuntimeError, AssertionError) as exc:
        raise ConfigError(f"device={cfg.device} cannot be used: {first_line(exc)}") from exc
    if not (isinstance(model, TextGenerator) and isinstance(datamodule, TextData)):
        raise DataError(
            f"checkpoint {cfg.ckpt_path} holds a {type(model).__name__}, not a language model; "
            "generate text with a checkpoint of experiment=charlm"
        )
    assert datamodule.vocab is not None  # restored with the model, from the checkpoint
    check_prompt(datamodule.vocab, str(cfg.prompt))  # before output= is opened
    sink = TextSink(output)
    _write_sample(cfg, model, datamodule, sink)
    text = sink.text
    where = run_directory_line(cfg.paths.output_dir)
    if output is None:
        log.info(where)  # after the text on stdout, on a shared terminal
    else:
        log.info("wrote %d characters to %s; %s", len(text), shown(output), where)
    return text


def job(cfg: DictConfig) -> None:
    """What Hydra runs: ``generate``, its mistakes in one line."""
    run_task(generate, cfg)


def main() -> None:
    """The command ``rnnlab-generate``: compose, check, run (``rnnlab.run``)."""
    command("generate", job)


if __name__ == "__main__":
    main()
