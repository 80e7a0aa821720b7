"""Text generation entry point: ``python -m rnnlab.generate ckpt_path=... prompt='...'``.

Restores a character language model and its vocabulary from a checkpoint (by the same safe
rules as ``rnnlab.eval``; any task whose model is a ``TextGenerator`` and data ``TextData``,
``rnnlab.capabilities``) and samples ``length`` characters after ``prompt``, carrying the
recurrent state (one step per character). The prompt and the text go to stdout, or to
``output`` (written atomically).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from omegaconf import DictConfig

from rnnlab.capabilities import TextData, TextGenerator
from rnnlab.checkpoint import load_checkpoint, restore
from rnnlab.run.command import command
from rnnlab.run.job import run_task
from rnnlab.sampling import check_sampling, sample_text
from rnnlab.utils.errors import ConfigError, DataError, first_line
from rnnlab.utils.files import atomic_path, blocking_file
from rnnlab.utils.report import run_directory_line, shown

log = logging.getLogger(__name__)


def _check_output(output: Path, overwrite: bool) -> None:
    blocker = blocking_file(output.parent)
    if blocker is not None:
        raise DataError(f"cannot write {output}: {blocker} is a file; choose output=")
    if output.exists() and not overwrite:
        raise ConfigError(
            f"output={output} exists; choose another path or pass overwrite=true to replace it"
        )


def generate(cfg: DictConfig) -> str:
    """The prompt followed by ``cfg.length`` sampled characters; written to ``cfg.output``
    or printed."""
    check_sampling(cfg.length, cfg.temperature, cfg.top_k)
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
    vocab = datamodule.vocab
    assert vocab is not None  # restored with the model, from the checkpoint
    text = str(cfg.prompt) + sample_text(
        model,
        vocab,
        str(cfg.prompt),
        int(cfg.length),
        float(cfg.temperature),
        int(cfg.top_k),
        int(cfg.seed),
    )
    if output is None:
        print(text, flush=True)  # before the log's lines on stderr, on a shared terminal
        log.info(run_directory_line(cfg.paths.output_dir))
    else:
        output.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(output) as tmp:
            tmp.write_text(text, encoding="utf-8")
        where = run_directory_line(cfg.paths.output_dir)
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
