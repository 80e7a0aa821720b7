"""rnnlab.generate writes each character as it is sampled, stops cleanly on Ctrl-C with what it
wrote kept, bounds length, samples at any positive temperature, refuses seeds a generator cannot
take, and never loses sampled text to a failed write.

Interruptions come from a hook in the sampler (rnnlab.sampling.draw) at an exact character,
never from a timer."""

from __future__ import annotations

import errno
import io
import json
import os
import re
import sys
from pathlib import Path

import pytest
import torch

import rnnlab.generate
import rnnlab.sampling
from rnnlab.generate import generate
from rnnlab.sampling import MAX_SEED, check_sampling, check_seed
from rnnlab.train import train
from rnnlab.utils.errors import ConfigError, DataError, RunInterrupted
from tests.conftest import compose_config
from tests.test_cli import _run
from tests.test_input_limits import LM_FAST

PROSE = "It was the best of times,\nit was the worst of times,\nit was the age of wisdom.\n" * 40
PROMPT = "it was"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lm")
    corpus = root / "corpus.txt"
    corpus.write_text(PROSE)
    overrides = [*LM_FAST, f"data.file={corpus}"]
    train(compose_config("train", overrides, root / "run"))
    return root / "run" / "checkpoints" / "best.ckpt"


def _cfg(tmp_path: Path, ckpt: Path, *overrides: str):
    return compose_config(
        "generate", [f"ckpt_path={ckpt}", f"prompt={PROMPT}", "length=60", *overrides], tmp_path
    )


def _hook_draws(monkeypatch, at_each_draw) -> list[int]:
    """Call ``at_each_draw(n)`` before the n-th draw (from 1); the draws made so far."""
    original, drawn = rnnlab.sampling.draw, []

    def hooked(*args, **kwargs):
        at_each_draw(len(drawn) + 1)
        drawn.append(original(*args, **kwargs))
        return drawn[-1]

    monkeypatch.setattr(rnnlab.sampling, "draw", hooked)
    return drawn


def test_each_character_reaches_stdout_before_the_next_is_sampled(
    checkpoint, tmp_path, monkeypatch
):
    screen = io.StringIO()
    monkeypatch.setattr(sys, "stdout", screen)
    seen = []
    _hook_draws(monkeypatch, lambda n: seen.append(len(screen.getvalue())))
    text = generate(_cfg(tmp_path, checkpoint, "seed=3"))
    assert seen == [len(PROMPT) + k for k in range(60)]
    assert screen.getvalue() == text + "\n" and len(text) == len(PROMPT) + 60


def test_a_file_output_holds_each_finished_line_while_sampling(checkpoint, tmp_path, monkeypatch):
    output = tmp_path / "sample.txt"
    temporary = tmp_path / f".sample.txt.{os.getpid()}.tmp"
    seen = []
    _hook_draws(monkeypatch, lambda n: seen.append(temporary.read_text()))
    cfg = _cfg(tmp_path, checkpoint, f"output={output}")
    cfg.prompt = "it was\n"  # a line break typed as one (a command line would need quoting)
    text = generate(cfg)
    assert seen[0] == "it was\n"  # the prompt's line, before the first character is drawn
    assert output.read_text() == text and not temporary.exists()


@pytest.mark.parametrize("to_file", [False, True])
def test_ctrl_c_stops_sampling_and_keeps_what_was_written(
    checkpoint, tmp_path, monkeypatch, to_file
):
    full = generate(
        _cfg(tmp_path, checkpoint, "seed=5", "length=40", "output=" + str(tmp_path / "a"))
    )
    screen = io.StringIO()
    monkeypatch.setattr(sys, "stdout", screen)

    def interrupt(n: int) -> None:
        if n == 11:
            raise KeyboardInterrupt

    _hook_draws(monkeypatch, interrupt)
    output = tmp_path / "b.txt"
    where = [f"output={output}"] if to_file else []
    with pytest.raises(RunInterrupted) as caught:
        generate(_cfg(tmp_path, checkpoint, "seed=5", "length=40", *where))
    kept = f"in {output}" if to_file else "on stdout"
    assert str(caught.value) == (
        f"generation stopped by SIGINT after 10 of 40 characters; the prompt and those "
        f"characters are kept {kept}"
    )
    assert caught.value.exit_code == 130
    written = output.read_text() if to_file else screen.getvalue()
    assert written == full[: len(PROMPT) + 10] + ("" if to_file else "\n")
    assert not list(tmp_path.glob(".*.tmp"))


def test_the_command_stopped_by_sigint_exits_130_in_one_line_with_the_text_kept(
    checkpoint, tmp_path
):
    output, run_dir = tmp_path / "sample.txt", tmp_path / "run"
    script = (
        "import os, signal, sys\n"
        # a job a shell starts in the background inherits SIGINT ignored: Ctrl-C's behaviour
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "import rnnlab.sampling as sampling\n"
        "original, count = sampling.draw, [0]\n"
        "def hooked(*args, **kwargs):\n"
        "    count[0] += 1\n"
        "    if count[0] == 25:\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "    return original(*args, **kwargs)\n"
        "sampling.draw = hooked\n"
        "from rnnlab.generate import main\n"
        f"sys.argv = ['rnnlab.generate', 'ckpt_path={checkpoint}', 'length=100000',\n"
        f"            'output={output}', 'hydra.run.dir={run_dir}']\n"
        "main()\n"
    )
    result = _run(["-c", script], tmp_path)
    assert result.returncode == 130, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1] == (
        "interrupted: generation stopped by SIGINT after 24 of 100000 characters; the prompt "
        "and those characters are kept in sample.txt"  # shown from the working directory
    )
    assert len(output.read_text()) == len("The ") + 24
    assert json.loads((run_dir / "status.json").read_text())["status"] == "interrupted"


def test_length_is_bounded_by_max_length(checkpoint, tmp_path):
    with pytest.raises(ConfigError) as caught:
        generate(_cfg(tmp_path, checkpoint, "length=1000000000"))
    assert str(caught.value) == (
        "length=1000000000 is above max_length=1000000; give a smaller length, or raise "
        "max_length to sample that many characters"
    )
    assert len(generate(_cfg(tmp_path, checkpoint, "length=30", "max_length=30"))) == 36


def test_a_tiny_temperature_samples_the_most_likely_character(checkpoint, tmp_path):
    greedy = generate(_cfg(tmp_path, checkpoint, "top_k=1", "seed=1"))
    assert generate(_cfg(tmp_path, checkpoint, "temperature=1e-300", "seed=2")) == greedy
    scores = torch.tensor([0.0, 1e30, -1e30, 3.0], dtype=torch.float32)
    generator = torch.Generator().manual_seed(0)
    assert rnnlab.sampling.draw(scores, 1e-300, 0, generator) == 1
    assert rnnlab.sampling.draw(scores, 1e300, 0, generator) in (1, 2, 3)  # never <unk> (0)


@pytest.mark.parametrize("temperature", [0, -1, float("inf"), float("nan")])
def test_temperatures_that_cannot_sample_are_refused(temperature):
    with pytest.raises(ConfigError, match=re.escape(f"temperature={temperature}: must be > 0")):
        check_sampling(10, temperature, 0)


@pytest.mark.parametrize("seed", [1e23, 2**64, -1, True, "1", 3.0])
def test_seeds_a_generator_cannot_take_are_refused_in_one_line(seed):
    with pytest.raises(ConfigError) as caught:
        check_seed(seed)
    assert str(caught.value) == (
        f"seed={seed!r}: must be an integer from 0 to 2**64 - 1 ({MAX_SEED})"
    )


def test_the_largest_seed_samples(checkpoint, tmp_path):
    assert check_seed(MAX_SEED) == MAX_SEED
    generate(_cfg(tmp_path, checkpoint, f"seed={MAX_SEED}", "length=5"))
    with pytest.raises(ConfigError, match=re.escape("seed=1e+23: must be an integer")):
        generate(_cfg(tmp_path, checkpoint, "seed=1e23"))


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_an_output_that_cannot_be_created_is_refused_before_sampling(
    checkpoint, tmp_path, monkeypatch
):
    drawn = _hook_draws(monkeypatch, lambda n: None)
    with pytest.raises(DataError) as caught:
        generate(_cfg(tmp_path, checkpoint, "output=/proc/x"))
    assert str(caught.value).startswith("cannot write output=/proc/x: ")
    assert str(caught.value).endswith("; choose a writable output=")
    assert drawn == []
    with pytest.raises(DataError, match="is a directory; give a file path"):
        generate(_cfg(tmp_path, checkpoint, f"output={tmp_path}", "overwrite=true"))


def test_a_failed_write_prints_the_text_to_stdout_and_leaves_no_file(
    checkpoint, tmp_path, monkeypatch
):
    full = generate(_cfg(tmp_path, checkpoint, "seed=7"))
    screen = io.StringIO()
    monkeypatch.setattr(sys, "stdout", screen)

    def disk_full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(rnnlab.generate.os, "fsync", disk_full)
    output = tmp_path / "sample.txt"
    with pytest.raises(DataError) as caught:
        generate(_cfg(tmp_path, checkpoint, "seed=7", f"output={output}"))
    assert str(caught.value) == (
        f"cannot write output={output}: No space left on device; the {len(full)} characters "
        "(prompt and sampled text) were printed to stdout instead"
    )
    assert screen.getvalue() == full + "\n"
    assert not output.exists() and not list(tmp_path.glob(".*.tmp"))
