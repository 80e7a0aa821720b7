"""Text from a language model: the sampling settings' checks and prompt-to-text sampling, one
character at a time, shared by ``rnnlab.generate`` (which writes each character as it comes)
and the sample logged to TensorBoard during training."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Generator
from typing import Any, Protocol, runtime_checkable

import torch

from rnnlab.batch import UNKNOWN_ID
from rnnlab.capabilities import TextGenerator, Vocabulary
from rnnlab.utils.errors import ConfigError, DataError

# torch.Generator.manual_seed takes an unsigned 64-bit seed
MAX_SEED = 2**64 - 1


def _is_integer(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_sampling(
    length: int, temperature: float, top_k: int, max_length: int | None = None
) -> None:
    """Refuse settings that cannot sample (one line each); ``max_length`` bounds ``length``."""
    for name, value in (("length", length), ("temperature", temperature), ("top_k", top_k)):
        integral = name != "temperature"
        if isinstance(value, bool) or not isinstance(value, int if integral else int | float):
            kind = "an integer" if integral else "a number"
            raise ConfigError(f"{name}={value!r}: must be {kind}")
    if length <= 0:
        raise ConfigError(f"length={length}: give the number of characters to generate (>= 1)")
    if max_length is not None and length > max_length:
        raise ConfigError(
            f"length={length} is above max_length={max_length}; give a smaller length, or "
            "raise max_length to sample that many characters"
        )
    if not (temperature > 0 and math.isfinite(temperature)):
        raise ConfigError(
            f"temperature={temperature}: must be > 0 and finite (1 samples the model as is, "
            "lower is more conservative, near 0 always the most likely character)"
        )
    if top_k < 0:
        raise ConfigError(f"top_k={top_k}: must be >= 0 (0 samples from every character)")


def check_seed(seed: object) -> int:
    """``seed`` as the integer a generator takes, refusing others in one line."""
    if not _is_integer(seed) or not 0 <= seed <= MAX_SEED:  # type: ignore[operator]
        raise ConfigError(f"seed={seed!r}: must be an integer from 0 to 2**64 - 1 ({MAX_SEED})")
    return int(seed)  # type: ignore[call-overload]


@runtime_checkable
class SteppingModel(Protocol):
    """A ``TextGenerator`` that also reads a prompt and steps one character at a time with its
    state carried (``rnnlab.models.language.LanguageModel``), so text can be written as it is
    sampled; a generator without these gives its whole text at once."""

    training: bool
    device: torch.device

    def __call__(self, ids: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]: ...

    def step(self, ids: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]: ...

    def eval(self) -> Any: ...

    def train(self, mode: bool = True) -> Any: ...


def draw(
    scores: torch.Tensor, temperature: float, top_k: int, generator: torch.Generator | None
) -> int:
    """One character id from the next-character ``scores`` (vocab,) by ``softmax(scores /
    temperature)`` over the ``top_k`` most likely (0: all), never ``<unk>``.

    In float64, with the largest score subtracted before dividing: the most likely character's
    term is exactly 0, so no temperature, however small (1e-300), overflows to inf and NaN; it
    only makes the draw greedy."""
    scores = scores.detach().to("cpu", torch.float64).clone()
    if torch.isnan(scores).any():
        raise DataError("the model's next-character scores hold NaN; its weights are broken")
    scores[UNKNOWN_ID] = -math.inf
    if 0 < top_k < len(scores):
        kth = scores.topk(top_k).values[-1]
        scores = scores.masked_fill(scores < kth, -math.inf)
    logits = (scores - scores.max()) / temperature
    return int(torch.multinomial(logits.softmax(dim=-1), 1, generator=generator))


def _prompt_ids(vocab: Vocabulary, prompt: str) -> list[int]:
    ids = vocab.encode(prompt).tolist()
    if not ids:
        raise ConfigError("prompt='' is empty; give the model at least one character to start")
    if not any(ids):
        raise ConfigError(
            f"prompt={prompt!r} holds only characters the model never saw in training; "
            "start with characters of its training text"
        )
    return ids


def check_prompt(vocab: Vocabulary, prompt: str) -> None:
    """Refuse a prompt the model cannot start from (one line)."""
    _prompt_ids(vocab, prompt)


def step_ids(
    model: SteppingModel,
    prompt: list[int],
    length: int,
    temperature: float,
    top_k: int,
    generator: torch.Generator | None,
) -> Generator[int, None, None]:
    """``length`` ids after ``prompt``, each yielded as soon as it is drawn (state carried)."""
    with torch.no_grad():  # never open across a yield: the caller's own code runs there
        logits, state = model(torch.tensor([prompt], device=model.device))
    scores = logits[0, -1]
    for done in range(length):
        nxt = draw(scores, temperature, top_k, generator)
        yield nxt
        if done + 1 < length:
            with torch.no_grad():
                step, state = model.step(torch.tensor([nxt], device=model.device), state)
            scores = step[0]


def stream_text(
    model: TextGenerator,
    vocab: Vocabulary,
    prompt: str,
    length: int,
    temperature: float = 1.0,
    top_k: int = 0,
    seed: int = 0,
) -> Generator[str, None, None]:
    """The ``length`` characters that follow ``prompt``, one at a time as they are sampled; the
    same seed gives the same text. The model samples in eval mode and is put back in its own
    mode when the iterator ends or is closed (close it when stopping early)."""
    check_sampling(length, temperature, top_k)
    ids = _prompt_ids(vocab, prompt)
    generator = torch.Generator().manual_seed(check_seed(seed))
    if not isinstance(model, SteppingModel):
        for drawn in model.generate(ids, length, temperature, top_k, generator):
            yield vocab.decode([drawn])
        return
    was_training = model.training
    model.eval()
    try:
        with contextlib.closing(step_ids(model, ids, length, temperature, top_k, generator)) as it:
            for drawn in it:
                yield vocab.decode([drawn])
    finally:
        model.train(was_training)


def sample_text(
    model: TextGenerator,
    vocab: Vocabulary,
    prompt: str,
    length: int,
    temperature: float = 1.0,
    top_k: int = 0,
    seed: int = 0,
) -> str:
    """``length`` characters that follow ``prompt``; the same seed gives the same text."""
    return "".join(stream_text(model, vocab, prompt, length, temperature, top_k, seed))
