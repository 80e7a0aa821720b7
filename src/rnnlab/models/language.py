"""LightningModule of a character-level language model trained by truncated BPTT.

Lightning 2 dropped ``truncated_bptt_steps``; the data gives consecutive windows of the same
streams instead (``rnnlab.data.text``), and this module carries the recurrent state from one
window to the next, detached, so backpropagation stops at the window's start while the forward
pass keeps the whole history. Optimisation stays automatic: gradient clipping, accumulation,
precision and schedulers are Lightning's own.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar, cast

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import Metric

from rnnlab.batch import IGNORE_TARGET, UNKNOWN_ID, Batch
from rnnlab.models.base import STAGES, SequenceModule, StageMetrics
from rnnlab.models.encoder import RNNEncoder, State
from rnnlab.utils.errors import ConfigError

BASELINES = ("unigram", "ngram")


def detached(state: State) -> State:
    """The state's values without its autograd history (the graph stops at the window)."""
    if isinstance(state, tuple):
        return (state[0].detach(), state[1].detach())
    return state.detach()


class CharacterScores(Metric):
    """A stage's scores per character: ``bpc`` (bits), ``ppl`` (perplexity) and ``unk_chars``
    and, ``with_baselines``, ``loss`` (nats) and ``bpc_<baseline>`` of each n-gram baseline on
    the same characters. Kept as float64 sums over every scored character (~1e5 terms), summed
    across DDP ranks."""

    full_state_update = False

    def __init__(self, with_baselines: bool) -> None:
        super().__init__()
        self.with_baselines = with_baselines
        self.sums = ("nll", "chars", "unk", *(f"nll_{b}" for b in BASELINES))
        for name in self.sums:
            zero = torch.zeros((), dtype=torch.float64)
            self.add_state(name, default=zero, dist_reduce_fx="sum")

    def update(
        self,
        nll: torch.Tensor,
        chars: torch.Tensor,
        unk: torch.Tensor,
        baselines: dict[str, torch.Tensor],
    ) -> None:
        """Add a batch's sums: the model's negative log-likelihood, scored and unknown
        characters, and the baselines' negative log-likelihoods of the same characters."""
        added = {"nll": nll, "chars": chars, "unk": unk}
        added.update({f"nll_{name}": value for name, value in baselines.items()})
        for name, value in added.items():
            setattr(self, name, self._sum(name) + value.detach().double())

    def _sum(self, name: str) -> torch.Tensor:
        value: torch.Tensor = getattr(self, name)
        return value

    def compute(self) -> dict[str, torch.Tensor]:
        chars = self._sum("chars").clamp(min=1)
        nll = self._sum("nll") / chars
        scores = {"bpc": nll / math.log(2), "ppl": nll.exp(), "unk_chars": self._sum("unk")}
        if self.with_baselines:
            scores["loss"] = nll
            for name in BASELINES:
                scores[f"bpc_{name}"] = self._sum(f"nll_{name}") / chars / math.log(2)
        return {k: v.float() for k, v in scores.items()}


class LanguageModel(SequenceModule):
    """Embedding -> recurrent encoder (left to right) -> dropout -> linear decoder to the
    vocabulary, trained with cross-entropy on the next character.

    ``tie_weights`` shares the embedding matrix with the decoder (Press & Wolf 2017), which
    needs ``embedding_size`` equal to the encoder's ``hidden_size``. ``dropout`` applies to the
    embeddings and to the encoder's outputs (between stacked layers it is the encoder's own).
    Character id 0 is ``<unk>``: it is never generated.

    Regularisers of training only (Merity, Keskar & Socher 2017), all off by default:
    ``embedding_dropout`` drops whole characters, i.e. rows of the embedding matrix, with one
    mask per batch (a dropped character reads as zeros wherever it occurs; the others are
    scaled by 1 / (1 - p)); the stored weights are never masked. ``ar`` adds ``ar`` times the
    mean square of the encoder's outputs after dropout (activation regularisation) and ``tar``
    adds ``tar`` times the mean square of their change from one character to the next, before
    dropout (temporal activation regularisation), both over the characters a window scores;
    the logged ``train/loss`` stays the cross-entropy alone.

    Logged per stage: ``loss`` (nats per character), ``bpc`` (bits per character), ``ppl``
    (per-character perplexity), ``unk_chars``; for val and test also ``bpc_unigram`` and
    ``bpc_ngram``, the baselines' bits per character on the same characters.
    """

    # settings that size the weights: a checkpoint's are checked against its weights before
    # it is built (rnnlab.checkpoint.weights)
    size_settings: ClassVar[tuple[str, ...]] = ("vocab_size", "embedding_size")

    def __init__(
        self,
        encoder: RNNEncoder,
        vocab_size: int,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        embedding_size: int = 64,
        dropout: float = 0.0,
        tie_weights: bool = False,
        monitor: str = "val/bpc",
        embedding_dropout: float = 0.0,
        ar: float = 0.0,
        tar: float = 0.0,
    ) -> None:
        super().__init__(optimizer, scheduler, monitor)
        if not 0.0 <= embedding_dropout < 1.0:
            raise ConfigError(f"model.embedding_dropout={embedding_dropout} must be in [0, 1)")
        for name, weight in (("ar", ar), ("tar", tar)):
            if not weight >= 0.0 or math.isinf(weight):
                raise ConfigError(f"model.{name}={weight} must be a finite number >= 0")
        self.embedding_dropout, self.ar, self.tar = embedding_dropout, ar, tar
        if not isinstance(encoder, RNNEncoder):
            raise ConfigError(
                f"a language model reads and generates step by step, which "
                f"{type(encoder).__name__} cannot: use model/encoder=rnn"
            )
        if encoder.num_directions != 1:
            raise ConfigError(
                "a language model reads left to right; set model.encoder.bidirectional=false"
            )
        if encoder.rnn.input_size != embedding_size:
            raise ConfigError(
                f"model.encoder.input_size={encoder.rnn.input_size} must equal "
                f"model.embedding_size={embedding_size}"
            )
        if vocab_size < 2:
            raise ConfigError(f"vocab_size must be >= 2, got {vocab_size}")
        self.vocab_size = vocab_size
        self.embedding = nn.Embedding(vocab_size, embedding_size)
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.decoder = nn.Linear(encoder.hidden_size, vocab_size)
        if tie_weights:
            if embedding_size != encoder.hidden_size:
                raise ConfigError(
                    f"tie_weights needs model.embedding_size ({embedding_size}) equal to "
                    f"model.encoder.hidden_size ({encoder.hidden_size})"
                )
            self.decoder.weight = self.embedding.weight
        # the state carried between consecutive windows, per stage; reset at each epoch start
        self.carried: dict[str, State | None] = dict.fromkeys(STAGES)
        self.stage_metrics = StageMetrics(
            lambda stage: {"chars": CharacterScores(with_baselines=stage != "train")}
        )

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """The embeddings of ``ids``; in training, with whole characters dropped
        (``embedding_dropout``): one mask over the vocabulary per call."""
        weight = self.embedding.weight
        if self.training and self.embedding_dropout > 0:
            keep = 1.0 - self.embedding_dropout
            rows = weight.new_empty((weight.shape[0], 1)).bernoulli_(keep)
            weight = weight * rows / keep
        return F.embedding(ids, weight)

    def outputs(
        self, ids: torch.Tensor, state: State | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, State]:
        """The encoder's outputs for ``ids`` before and after dropout, and the state after."""
        out, state = self.encoder.sequence(self.dropout(self.embed(ids)), state)
        return out, self.dropout(out), state

    def forward(self, ids: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """Logits (batch, time, vocab) of the next character after each of ``ids`` (batch,
        time), from ``state`` (None: the encoder's initial state); and the state after."""
        _, dropped, state = self.outputs(ids, state)
        return self.decoder(dropped), state

    def step(self, ids: torch.Tensor, state: State | None) -> tuple[torch.Tensor, State]:
        """Logits (batch, vocab) after one more character per stream (``ids``: (batch,))."""
        logits, state = self(ids[:, None], state)
        return logits[:, 0], state

    # --- training and evaluation -------------------------------------------------------------
    def stage_step(self, batch: Batch, stage: str) -> torch.Tensor:
        y = batch.targets()
        out, dropped, state = self.outputs(batch.x, self.carried[stage])
        logits = self.decoder(dropped)
        self.carried[stage] = detached(state)
        nll = F.cross_entropy(
            logits.transpose(1, 2).float(), y, ignore_index=IGNORE_TARGET, reduction="none"
        )
        valid = y != IGNORE_TARGET
        chars = valid.sum()
        loss = nll.sum() / chars.clamp(min=1)
        baselines = {name: values[valid].sum() for name, values in batch.baselines.items()}
        self.stage_metrics.update(
            stage, "chars", nll.sum(), chars, (y == UNKNOWN_ID).sum(), baselines
        )
        if stage == "train":
            self.log_loss(stage, loss, len(batch))
            return loss + self.activation_penalty(out, dropped, valid)
        return loss

    def activation_penalty(
        self, out: torch.Tensor, dropped: torch.Tensor, valid: torch.Tensor
    ) -> torch.Tensor:
        """``ar`` times the mean square of ``dropped`` plus ``tar`` times the mean square of
        ``out``'s steps, over the ``valid`` (batch, time) positions (and pairs of them)."""
        penalty = out.new_zeros(())
        if self.ar > 0:
            squares = dropped.float().pow(2).mean(-1)
            penalty = penalty + self.ar * squares[valid].sum() / valid.sum().clamp(min=1)
        if self.tar > 0:
            pairs = valid[:, 1:] & valid[:, :-1]
            steps = (out[:, 1:] - out[:, :-1]).float().pow(2).mean(-1)
            penalty = penalty + self.tar * steps[pairs].sum() / pairs.sum().clamp(min=1)
        return penalty

    def on_train_epoch_start(self) -> None:
        self.carried["train"] = None

    def on_validation_epoch_start(self) -> None:
        self.carried["val"] = None

    def on_test_epoch_start(self) -> None:
        self.carried["test"] = None

    # --- sampling ----------------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self,
        prompt: list[int],
        length: int,
        temperature: float = 1.0,
        top_k: int = 0,
        generator: torch.Generator | None = None,
    ) -> list[int]:
        """``length`` character ids following ``prompt``, sampled one at a time with the state
        carried (O(length)), from ``softmax(logits / temperature)`` restricted to the ``top_k``
        most likely (0: all), exactly as ``rnnlab.sampling`` draws. Draws come from
        ``generator`` (a CPU generator; None: the global random state)."""
        from rnnlab.sampling import SteppingModel, step_ids  # float64 draws, never <unk>

        was_training = self.training
        self.eval()
        try:
            stepping = cast("SteppingModel", self)  # what it is; mypy reads device as settable
            return list(step_ids(stepping, prompt, length, temperature, top_k, generator))
        finally:
            self.train(was_training)
