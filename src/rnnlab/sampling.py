"""Text from a language model: the sampling settings' checks and prompt-to-text sampling, shared
by ``rnnlab.generate`` and the sample logged to TensorBoard during training."""

from __future__ import annotations

import torch

from rnnlab.capabilities import TextGenerator, Vocabulary
from rnnlab.utils.errors import ConfigError


def check_sampling(length: int, temperature: float, top_k: int) -> None:
    """Refuse settings that cannot sample (one line each)."""
    for name, value in (("length", length), ("temperature", temperature), ("top_k", top_k)):
        integral = name != "temperature"
        if isinstance(value, bool) or not isinstance(value, int if integral else int | float):
            kind = "an integer" if integral else "a number"
            raise ConfigError(f"{name}={value!r}: must be {kind}")
    if length <= 0:
        raise ConfigError(f"length={length}: give the number of characters to generate (>= 1)")
    if not temperature > 0:
        raise ConfigError(
            f"temperature={temperature}: must be > 0 (1 samples the model as is, lower is "
            "more conservative)"
        )
    if top_k < 0:
        raise ConfigError(f"top_k={top_k}: must be >= 0 (0 samples from every character)")


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
    check_sampling(length, temperature, top_k)
    ids = vocab.encode(prompt).tolist()
    if not ids:
        raise ConfigError("prompt='' is empty; give the model at least one character to start")
    if not any(ids):
        raise ConfigError(
            f"prompt={prompt!r} holds only characters the model never saw in training; "
            "start with characters of its training text"
        )
    generator = torch.Generator().manual_seed(seed)
    return vocab.decode(model.generate(ids, length, temperature, top_k, generator))
