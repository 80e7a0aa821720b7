"""Six bugs that once passed every test when planted one at a time, each with a test that fails on
it: the language model's state reset at each epoch, the LR scheduler's state across a resume, the
character vocabulary of the training part only, the time order of gradient-flow diagnostics, an
ensemble's averaged probabilities, and an allow-list gadget that resolves through a module
attribute. ``docs/testing.md`` says how each was planted."""

from __future__ import annotations

import functools
import importlib
import math
import os
import subprocess
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from rnnlab.batch import UNKNOWN_ID, Batch
from rnnlab.callbacks.diagnostics import first_over_last, state_gradient_norms
from rnnlab.checkpoint import CONFIG_KEY, DATA_KEY, load_checkpoint, restore
from rnnlab.checkpoint.format import FORMAT, FORMAT_KEY
from rnnlab.data.text import TextDataModule
from rnnlab.ensemble import ensemble
from rnnlab.models.encoder import RNNEncoder
from rnnlab.models.language import LanguageModel
from rnnlab.train import build_data_and_model, train
from rnnlab.utils.errors import UserError
from tests.conftest import FAST, compose_config

PROSE = (
    "It was the best of times, it was the worst of times, it was the age of wisdom, it was the "
    "age of foolishness, it was the epoch of belief, it was the epoch of incredulity. "
)
QUIET = ["logger=none", "trainer.enable_progress_bar=false"]


def _language_model(vocab: int) -> LanguageModel:
    encoder = RNNEncoder(8, 16, cell="lstm", bidirectional=False)
    optimizer = functools.partial(torch.optim.SGD, lr=0.5)
    return LanguageModel(encoder, vocab, optimizer, embedding_size=8)


def _trainer(**settings: Any) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **settings,
    )


# --- 1. truncated BPTT: each epoch starts from a fresh state ------------------------------------


class _FreshStateLoss(L.Callback):
    """Before the first two windows of every epoch, the loss the window would have from the
    initial state (the weights of that step, no carried state); after it, the loss it had."""

    def __init__(self) -> None:
        self.fresh: dict[tuple[int, int], float] = {}
        self.taken: dict[tuple[int, int], float] = {}

    def on_train_batch_start(self, trainer, pl_module, batch: Batch, batch_idx: int) -> None:
        if batch_idx < 2:
            with torch.no_grad():
                logits, _ = pl_module(batch.x)
                loss = F.cross_entropy(logits.transpose(1, 2), batch.targets())
            self.fresh[trainer.current_epoch, batch_idx] = float(loss)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if batch_idx < 2:
            self.taken[trainer.current_epoch, batch_idx] = float(outputs["loss"])


def test_each_training_epoch_starts_its_first_window_from_a_fresh_state(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(PROSE * 12, encoding="utf-8")
    data = TextDataModule(file=str(corpus), batch_size=4, bptt=16, ngram_max_order=2)
    data.setup()
    torch.manual_seed(0)
    model = _language_model(len(data.vocab))
    probe = _FreshStateLoss()
    _trainer(max_epochs=2, callbacks=[probe], num_sanity_val_steps=0).fit(model, data)
    assert set(probe.taken) == {(0, 0), (0, 1), (1, 0), (1, 1)}
    for epoch in (0, 1):
        # the first window of each epoch is scored from the initial state, not from the state
        # the previous epoch's last window left
        assert probe.taken[epoch, 0] == pytest.approx(probe.fresh[epoch, 0], rel=1e-6), epoch
        # while the second window carries the first one's state: the probe can tell them apart
        assert abs(probe.taken[epoch, 1] - probe.fresh[epoch, 1]) > 1e-4, epoch


# --- 2. resuming restores the LR scheduler's state ----------------------------------------------

# a scheduler that changes the rate at every epoch; T_max fixed, so that a run of 2 epochs and
# its resumption to 4 have the same model config
COSINE = [
    *FAST,
    *QUIET,
    "task_name=resume_cosine",
    "model/scheduler=cosine",
    "model.scheduler.T_max=6",
    "model.encoder.hidden_size=8",
    "+trainer.limit_train_batches=3",
    "+trainer.limit_val_batches=2",
    "+trainer.limit_test_batches=1",
]


def _cosine_run(logs: Path, name: str, *overrides: str) -> tuple[dict[str, float], dict]:
    cfg = compose_config(
        "train", [*COSINE, f"paths.log_dir={logs}", *overrides], logs / "runs" / name
    )
    metrics = train(cfg)
    return metrics, load_checkpoint(logs / "runs" / name / "checkpoints" / "last.ckpt")


def test_resuming_restores_the_lr_scheduler_state_with_the_optimiser(tmp_path):
    straight, straight_last = _cosine_run(tmp_path / "a", "straight", "trainer.max_epochs=4")
    _cosine_run(tmp_path / "b", "first", "trainer.max_epochs=2")
    resumed, resumed_last = _cosine_run(
        tmp_path / "b",
        "resumed",
        "trainer.max_epochs=4",
        f"ckpt_path={tmp_path / 'b' / 'runs' / 'first' / 'checkpoints' / 'last.ckpt'}",
    )
    assert straight_last["lr_schedulers"][0]["last_epoch"] == 4
    assert resumed_last["lr_schedulers"] == straight_last["lr_schedulers"]
    rates = [
        c["optimizer_states"][0]["param_groups"][0]["lr"] for c in (straight_last, resumed_last)
    ]
    # cos(pi * 4 / 6) of the way from 0.003 to 0: a rate that only the restored state reaches
    assert rates[0] == pytest.approx(0.003 * (1 + math.cos(math.pi * 4 / 6)) / 2, rel=1e-9)
    assert rates[1] == rates[0]
    for name, weight in straight_last["state_dict"].items():
        assert torch.equal(resumed_last["state_dict"][name], weight), name
    assert resumed["train/loss_epoch"] == straight["train/loss_epoch"]


# --- 3. the character vocabulary comes from the training part only -------------------------------


def test_a_character_seen_only_in_the_test_part_is_unknown_and_counted(tmp_path):
    text = PROSE * 12 + "~~ the end ~"  # '~' only in the last characters: the test part
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(text, encoding="utf-8")
    data = TextDataModule(file=str(corpus), batch_size=4, bptt=16, ngram_max_order=2)
    data.setup()
    assert data.vocab is not None
    test_at = len(text) - round(len(text) * data.test_fraction)
    assert "~" not in text[:test_at] and text[test_at:].count("~") == 3
    assert "~" not in data.vocab.chars and data.vocab.chars == sorted(set(PROSE))
    assert (data.parts["test"] == UNKNOWN_ID).sum() == 3
    torch.manual_seed(0)
    (metrics,) = _trainer().test(_language_model(len(data.vocab)), data, verbose=False)
    assert metrics["test/unk_chars"] == 3


# --- 4. gradient-flow diagnostics in reading order -----------------------------------------------

CONTRACTING = [
    "experiment=adding",
    "trainer.accelerator=cpu",
    "data.length=12",
    "data.train_size=16",
    "data.val_size=8",
    "data.test_size=8",
    "data.batch_size=8",
    "model.encoder.cell=rnn",
    "model.encoder.nonlinearity=tanh",
    "model.encoder.hidden_size=6",
    "model.encoder.bidirectional=true",
    "model.encoder.pooling=last",
]


def test_state_gradients_decay_back_in_time_from_the_loss_in_each_reading_order(tmp_path):
    """A tanh RNN whose recurrent matrices have spectral norm 0.5 shrinks dL/dh by at least
    half per step back from where the loss reads it: the last step each direction reads (the
    last valid step forwards, t = 0 backwards). In reading order the norms must rise."""
    datamodule, model = build_data_and_model(compose_config("train", CONTRACTING, tmp_path))
    with torch.no_grad():
        for name, weight in model.encoder.rnn.named_parameters():
            if name.startswith("weight_hh"):
                weight.mul_(0.5 / torch.linalg.matrix_norm(weight, ord=2))
    model.train()
    batch: Batch = next(iter(datamodule.train_dataloader()))
    batch.lengths = torch.tensor([12, 5, 9, 1, 12, 7, 3, 10])
    norms = state_gradient_norms(model, model.encoder, batch)
    assert set(norms) == {"l0", "l0_reverse"}
    for name, norm in norms.items():
        for row, length in zip(norm, batch.lengths.tolist(), strict=True):
            valid = row[:length]
            assert (valid > 0).all(), name
            # each step back from the loss at most half of the step after it
            assert (valid[:-1] <= 0.5 * valid[1:]).all(), (name, valid)
        assert first_over_last(norm, batch.lengths) < 0.5**4, name


# --- 5. an ensemble averages probabilities -------------------------------------------------------

MEMBER = [*FAST, *QUIET, "model.encoder.hidden_size=8"]


def _member(run_dir: Path, seed: int, confidence: float) -> Path:
    """A classifier's run directory holding a best checkpoint of untrained weights (seeded),
    its head scaled by ``confidence``: members of different certainty, for no training time."""
    cfg = compose_config("train", [*MEMBER, f"seed={seed}"], run_dir)
    torch.manual_seed(seed)
    datamodule, model = build_data_and_model(cfg)
    with torch.no_grad():
        model.head[-1].weight.mul_(confidence)
        model.head[-1].bias.normal_(0.0, confidence)
    checkpoint = {
        CONFIG_KEY: OmegaConf.to_container(cfg, resolve=True),
        DATA_KEY: datamodule.state_dict(),
        FORMAT_KEY: FORMAT,
        "state_dict": model.state_dict(),
    }
    (run_dir / "checkpoints").mkdir(parents=True)
    torch.save(checkpoint, run_dir / "checkpoints" / "best.ckpt")
    return run_dir


def _test_probabilities(run_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """A member's softmax probabilities on its whole test split, and the targets, by hand."""
    best = run_dir / "checkpoints" / "best.ckpt"
    _, datamodule, model = restore(load_checkpoint(best), best)
    datamodule.setup("test")
    model.eval()
    probabilities, targets = [], []
    with torch.no_grad():
        for batch in datamodule.loader(datamodule.dataset("test"), shuffle=False):
            probabilities.append(model(batch.x, batch.lengths).double().softmax(dim=-1))
            targets.append(batch.targets())
    return torch.cat(probabilities), torch.cat(targets)


def test_an_ensembles_loss_is_the_nll_of_its_members_mean_probabilities(tmp_path):
    runs = [_member(tmp_path / "a", 1, 1.0), _member(tmp_path / "b", 2, 6.0)]
    metrics = ensemble(
        compose_config(
            "ensemble",
            [f"runs=[{','.join(map(str, runs))}]", "trainer.accelerator=cpu"],
            tmp_path / "ens",
        )
    )
    (p_a, targets), (p_b, targets_b) = map(_test_probabilities, runs)
    assert torch.equal(targets, targets_b) and len(targets) == 370
    picked = torch.arange(len(targets)), targets
    nll_of_mean = float(-((p_a + p_b) / 2)[picked].log().mean())
    # what averaging the members' logits (log-probabilities) would give instead
    log_mean = ((p_a.log() + p_b.log()) / 2).log_softmax(dim=-1)
    nll_of_logit_mean = float(-log_mean[picked].mean())
    assert abs(nll_of_mean - nll_of_logit_mean) > 1e-2  # the two differ measurably here
    assert metrics["test/loss"] == pytest.approx(nll_of_mean, rel=1e-5)
    accuracy = float((((p_a + p_b) / 2).argmax(dim=-1) == targets).double().mean())
    assert metrics["test/acc"] == pytest.approx(accuracy, abs=1e-6)


# --- 6. an rnnlab-prefixed gadget that resolves to a real callable is refused ------------------


def _resolve(dotted: str) -> Any:
    """What a dotted path names when followed through module attributes, as Hydra's locate
    would: the first importable module, then attribute after attribute."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            found = getattr(found, name)
        return found
    raise ImportError(dotted)


class _RecordingPopen(subprocess.Popen):
    """Stands in for subprocess.Popen: records a call instead of starting a process, so a
    gadget that gets through is seen at once and runs nothing."""

    calls: ClassVar[list[Any]] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        _RecordingPopen.calls.append((args, kwargs))


def _genuine_checkpoint(tmp_path: Path) -> dict[str, Any]:
    """A checkpoint as training writes one, of a small untrained regressor (no training time)."""
    cfg = compose_config("train", CONTRACTING, tmp_path / "genuine")
    datamodule, model = build_data_and_model(cfg)
    return {
        CONFIG_KEY: OmegaConf.to_container(cfg, resolve=True),
        DATA_KEY: datamodule.state_dict(),
        FORMAT_KEY: FORMAT,
        "state_dict": model.state_dict(),
    }


@pytest.mark.parametrize("place", ["data", "model", "model.encoder"])
@pytest.mark.parametrize(
    ("target", "setting"),
    [("rnnlab.utils.ddp.subprocess.Popen", "args"), ("rnnlab.utils.files.os.system", "command")],
)
def test_a_prefixed_gadget_resolving_to_a_real_callable_is_refused(
    tmp_path, monkeypatch, place, target, setting
):
    assert _resolve(target) in (subprocess.Popen, os.system)  # the path does lead somewhere
    system_calls: list[Any] = []
    monkeypatch.setattr(subprocess, "Popen", _RecordingPopen)
    monkeypatch.setattr("os.system", lambda *a, **k: system_calls.append((a, k)))
    monkeypatch.setattr(_RecordingPopen, "calls", [])
    checkpoint = _genuine_checkpoint(tmp_path)
    restore(checkpoint, "genuine.ckpt")  # the untouched one loads
    marker = tmp_path / "marker"
    node = checkpoint[CONFIG_KEY]
    *parents, last = place.split(".")
    for key in parents:
        node = node[key]
    # a setting the callable takes: Popen(args=[...]), os.system(command=...)
    command = ["touch", str(marker)] if setting == "args" else f"touch {marker}"
    node[last] = {"_target_": target, setting: command}
    path = tmp_path / "crafted.ckpt"
    torch.save(checkpoint, path)
    with pytest.raises(UserError, match="refusing to load it") as refused:
        restore(load_checkpoint(path), path)
    assert _RecordingPopen.calls == [] and system_calls == [] and not marker.exists()
    assert f"{place}._target_ is {target!r}" in str(refused.value)
