"""Character language model: truncated BPTT with carried state, stateful evaluation, streaming
steps, n-gram baselines, generation and its bad input."""

from __future__ import annotations

import functools
import json
import logging
import math
import random
import re
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnlab.batch import IGNORE_TARGET, Batch
from rnnlab.checkpoint import load_checkpoint, restore
from rnnlab.data.ngram import KneserNey, best_order, unigram_nll
from rnnlab.data.text import TextDataModule, Vocabulary, fixed_windows
from rnnlab.generate import generate
from rnnlab.models.encoder import CELLS, RNNEncoder
from rnnlab.models.language import LanguageModel
from rnnlab.sampling import sample_text
from rnnlab.train import train
from rnnlab.utils.errors import ConfigError, DataError
from tests.conftest import FAST, compose_config
from tests.test_cli import _run

PROSE = (
    "It was the best of times, it was the worst of times, it was the age of wisdom, it was the "
    "age of foolishness, it was the epoch of belief, it was the epoch of incredulity. "
)


def _model(
    vocab: int, cell: str = "lstm", hidden: int = 16, layers: int = 1, **kw
) -> LanguageModel:
    encoder = RNNEncoder(8, hidden, num_layers=layers, cell=cell, bidirectional=False)
    optimizer = functools.partial(torch.optim.SGD, lr=0.1)
    return LanguageModel(encoder, vocab, optimizer, embedding_size=8, **kw)


def _text_file(tmp_path: Path, text: str, name: str = "corpus.txt") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


# --- truncated BPTT ------------------------------------------------------------------------------


def _windows(ids: torch.Tensor, size: int) -> list[Batch]:
    """One stream cut into consecutive windows of ``size`` (inputs and next-character targets)."""
    batches, start = [], 0
    for width in fixed_windows(len(ids) - 1, size):
        x, y = ids[None, start : start + width], ids[None, start + 1 : start + width + 1]
        batches.append(Batch(x=x, lengths=torch.tensor([width]), y=y))
        start += width
    return batches


def test_one_window_over_the_whole_text_is_plain_full_bptt():
    torch.manual_seed(0)
    ids = torch.randint(1, 12, (60,))
    model = _model(12)
    model.on_train_epoch_start()
    (batch,) = _windows(ids, 1000)
    loss = model.training_step(batch, 0)
    loss.backward()
    ours = {name: p.grad.clone() for name, p in model.named_parameters()}
    # the same network, written out by hand: embedding, nn.LSTM from zeros, linear, mean CE
    model.zero_grad()
    out, _ = model.encoder.rnn(model.embedding(ids[None, :-1]))
    plain = F.cross_entropy(model.decoder(out)[0], ids[1:])
    plain.backward()
    assert torch.allclose(loss, plain)
    for name, p in model.named_parameters():
        assert torch.allclose(ours[name], p.grad, atol=1e-7), name


@pytest.mark.parametrize("cell", list(CELLS))
def test_carried_state_makes_windows_score_like_one_pass_and_has_no_history(cell: str):
    torch.manual_seed(1)
    ids = torch.randint(1, 9, (101,))
    model = _model(9, cell=cell, layers=2)
    model.on_train_epoch_start()
    losses = []
    for i, batch in enumerate(_windows(ids, 7)):
        loss = model.training_step(batch, i)
        loss.backward()  # a graph reaching into the previous window would fail here
        losses.append(loss.detach() * batch.lengths.sum())
        state = model.carried["train"]
        for part in state if isinstance(state, tuple) else (state,):
            assert part.grad_fn is None and not part.requires_grad
    whole = F.cross_entropy(model(ids[None, :-1])[0][0], ids[1:], reduction="sum")
    assert torch.allclose(sum(losses), whole, atol=1e-4)
    # and the carry is what makes them agree: restarting every window scores worse or different
    restarted = sum(
        F.cross_entropy(model(b.x)[0][0], b.y[0], reduction="sum") for b in _windows(ids, 7)
    )
    assert not torch.allclose(restarted, whole, atol=1e-3)


def _graph_size(tensor: torch.Tensor) -> int:
    seen, stack = set(), [tensor.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        stack.extend(next_fn for next_fn, _ in node.next_functions)
    return len(seen)


def test_graph_stays_flat_over_1000_steps():
    torch.manual_seed(2)
    ids = torch.randint(1, 6, (1000 * 3 + 1,))
    model = _model(6, hidden=4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    model.on_train_epoch_start()
    sizes = []
    for i, batch in enumerate(_windows(ids, 3)):
        loss = model.training_step(batch, i)
        if i in (0, 1, 2, 500, 999):
            sizes.append(_graph_size(loss))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert i == 999 and len(sizes) == 5
    # the graph (and the activations it holds) of step 1000 is as small as that of step 1
    assert max(sizes) == min(sizes)


class _NoCarry(L.Callback):
    """Restart every window from the initial state, as a model without carried state would."""

    def on_train_batch_start(self, trainer, pl_module, *args) -> None:
        pl_module.carried["train"] = None


BPTT, BEYOND = 12, 4


def _key_query_text(seed: int, size: int) -> str:
    """Segments 'K' key '.'*gap 'Q' key: the character after Q repeats the key. Half the gaps
    are short (learnable within a window); the rest put the key bptt + 4 steps back."""
    rng, out = random.Random(seed), []
    while sum(map(len, out)) < size:
        key = rng.choice("ab")
        gap = rng.randint(1, 5) if rng.random() < 0.5 else BPTT + BEYOND
        out.append(f"K{key}{'.' * gap}Q{key}")
    return "".join(out)


def _long_range_accuracy(tmp_path: Path, carry: bool) -> float:
    L.seed_everything(0)
    data = TextDataModule(
        file=_text_file(tmp_path, _key_query_text(0, 60000)),
        batch_size=16,
        bptt=BPTT,
        eval_streams=1,
        val_fraction=0.1,
        test_fraction=0.1,
        ngram_max_order=2,
    )
    data.setup()
    encoder = RNNEncoder(8, 24, cell="lstm", bidirectional=False)
    model = LanguageModel(
        encoder, len(data.vocab), functools.partial(torch.optim.Adam, lr=0.02), embedding_size=8
    )
    trainer = L.Trainer(
        max_epochs=3,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[] if carry else [_NoCarry()],
        gradient_clip_val=1.0,
    )
    trainer.fit(model, data)
    # read the validation text the way the model was trained: carried, or restarted per window
    ids = torch.from_numpy(data.parts["val"])
    text = data.vocab.decode(ids.tolist())
    model.eval()
    with torch.no_grad():
        if carry:
            logits = model(ids[None, :-1])[0][0]
        else:
            logits = torch.cat([model(b.x)[0][0] for b in _windows(ids, BPTT)])
    hits = [
        bool(logits[i - 1].argmax() == ids[i])
        for i in range(1, len(text))
        if text[i - 1] == "Q" and (i - 1) - text.rfind("K", 0, i - 1) > BPTT
    ]
    assert len(hits) > 100
    return sum(hits) / len(hits)


@pytest.mark.slow
def test_a_dependency_beyond_the_window_is_learnt_only_with_carried_state(tmp_path):
    assert _long_range_accuracy(tmp_path, carry=True) > 0.95
    assert _long_range_accuracy(tmp_path, carry=False) < 0.7  # a coin toss: 0.5


# --- evaluation ------------------------------------------------------------------------------


def test_stateful_evaluation_equals_scoring_the_whole_text_at_once(tmp_path):
    text = PROSE * 40
    data = TextDataModule(
        file=_text_file(tmp_path, text), batch_size=4, bptt=16, eval_streams=1, ngram_max_order=3
    )
    data.setup()
    torch.manual_seed(3)
    model = _model(len(data.vocab))
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    (metrics,) = trainer.validate(model, data, verbose=False)
    ids = torch.from_numpy(data.parts["val"])
    with torch.no_grad():
        whole = F.cross_entropy(model(ids[None, :-1])[0][0], ids[1:])
    assert math.isclose(metrics["val/loss"], float(whole), rel_tol=1e-5)
    assert math.isclose(metrics["val/bpc"], float(whole) / math.log(2), rel_tol=1e-5)


@given(
    size=st.integers(2, 300),
    streams=st.integers(1, 9),
    world=st.integers(1, 4),
    bptt=st.integers(1, 40),
)
@settings(max_examples=60, deadline=None)
def test_eval_windows_score_every_character_once_on_any_number_of_ranks(size, streams, world, bptt):
    data = TextDataModule(bptt=bptt, eval_streams=streams)
    ids = torch.arange(size) % 50 + 1
    data.vocab, data.parts = Vocabulary([chr(65 + i) for i in range(50)]), {"val": ids.numpy()}
    data.baselines = {"val": {"ngram": torch.ones(size - 1).double().numpy()}}
    scored: list[tuple[int, int]] = []
    counts = set()
    for rank in range(world):
        data._world = lambda rank=rank: (world, rank)  # type: ignore[method-assign]
        batches = list(data._eval_loader("val"))
        counts.add(len(batches))  # DDP ranks must step the same number of times
        for batch in batches:
            valid = batch.y != IGNORE_TARGET
            assert (batch.lengths == valid.sum(dim=1)).all()
            assert (batch.baselines["ngram"][valid] == 1).all()
            scored += list(zip(batch.x[valid].tolist(), batch.y[valid].tolist(), strict=True))
    assert len(counts) == 1
    # every (character, next character) pair of the text exactly once, whatever the layout
    assert sorted(scored) == sorted(zip(ids[:-1].tolist(), ids[1:].tolist(), strict=True))


# --- the streaming step ------------------------------------------------------------------------


@given(
    cell=st.sampled_from(list(CELLS)),
    layers=st.integers(1, 3),
    learned_init=st.booleans(),
    steps=st.integers(1, 12),
    seed=st.integers(0, 1000),
)
@settings(max_examples=40, deadline=None)
def test_step_by_step_equals_the_full_sequence(cell, layers, learned_init, steps, seed):
    torch.manual_seed(seed)
    encoder = RNNEncoder(
        3, 5, num_layers=layers, cell=cell, bidirectional=False, learned_init=learned_init
    ).eval()
    if learned_init:
        with torch.no_grad():
            encoder.h0.normal_()
    x = torch.randn(2, steps, 3)
    full, final = encoder.sequence(x)
    state = None
    for t in range(steps):
        y_t, state = encoder.step(x[:, t], state)
        assert torch.allclose(y_t, full[:, t], atol=1e-6)
    for ours, theirs in zip(
        state if isinstance(state, tuple) else (state,),
        final if isinstance(final, tuple) else (final,),
        strict=True,
    ):
        assert torch.allclose(ours, theirs, atol=1e-6)
    # the last step's output is what the pooled encoder reads as "last"
    encoder.pooling = "last"
    last = encoder(x, torch.full((2,), steps))
    assert torch.allclose(last, full[:, -1], atol=1e-6)


def test_bidirectional_models_cannot_step_or_generate():
    encoder = RNNEncoder(3, 5, bidirectional=True)
    with pytest.raises(ConfigError, match="bidirectional=false"):
        encoder.step(torch.zeros(1, 3))
    with pytest.raises(ConfigError, match="bidirectional=false"):
        LanguageModel(RNNEncoder(8, 5, bidirectional=True), 5, torch.optim.SGD, embedding_size=8)


def test_tied_weights_share_one_matrix_and_need_equal_sizes():
    encoder = RNNEncoder(16, 16, bidirectional=False)
    model = LanguageModel(encoder, 7, torch.optim.SGD, embedding_size=16, tie_weights=True)
    assert model.decoder.weight is model.embedding.weight
    with pytest.raises(ConfigError, match="tie_weights needs"):
        encoder = RNNEncoder(8, 16, bidirectional=False)
        LanguageModel(encoder, 7, torch.optim.SGD, embedding_size=8, tie_weights=True)


# --- n-gram baselines ------------------------------------------------------------------------


def test_kneser_ney_by_hand_on_a_tiny_text():
    # train "abab": bigrams ab, ba, ab -> c(ab)=2, c(ba)=1; unigram continuations: a after b
    # once, b after a once -> each 1 of 2. Discounts: bigram counts {2, 1}: n1=1, n2=1 -> 1/3;
    # continuation counts {1, 1}: n1=2, n2=0 -> 1.
    model = KneserNey("abab", 2, vocab_size=3)  # a, b and one unseen symbol
    uniform = 1 / 3
    p_uni_a = (max(1 - 1, 0) + 1 * 2 * uniform) / 2  # = 1/3
    p_uni_b = p_uni_a
    # context 'a' (total 2, one follower type): P(b|a) = (2 - 1/3)/2 + (1/3)(1)/2 * P(b)
    assert math.isclose(model.probability("a", "b"), (2 - 1 / 3) / 2 + (1 / 3) / 2 * p_uni_b)
    assert math.isclose(model.probability("a", "a"), (1 / 3) / 2 * p_uni_a)
    # an unseen context falls back to the unigram level; an unseen character to the floor
    assert math.isclose(model.probability("z", "a"), p_uni_a)
    assert math.isclose(model.probability("a", "z"), (1 / 3) / 2 * (1 * 2 * uniform / 2))


@given(
    text=st.text(alphabet="abcd ", min_size=1, max_size=80),
    order=st.integers(1, 5),
    history=st.text(alphabet="abcdz ", max_size=6),
)
@settings(max_examples=80, deadline=None)
def test_kneser_ney_probabilities_sum_to_one(text, order, history):
    model = KneserNey(text, 5, vocab_size=len(set(text)) + 1).with_order(order)
    total = sum(model.probability(history, c) for c in set(text)) + model.probability(history, "z")
    assert math.isclose(total, 1.0, rel_tol=1e-9)


def test_best_order_is_chosen_on_validation_and_unigram_is_add_one():
    train, val = PROSE * 5, PROSE
    model, nll = best_order(train, val, len(set(train)) + 1, range(2, 6))
    assert model.order > 2  # repeated prose: longer contexts win on val
    assert math.isclose(nll, float(model.nll(val, start=1).mean()))
    counts = {c: train.count(c) for c in "it"}
    expected = [-math.log((counts[c] + 1) / (len(train) + 5)) for c in "it"]
    assert unigram_nll(train, "it", 5).tolist() == pytest.approx(expected)


# --- whole runs: training, checkpoints, eval, generate -----------------------------------------

LM_FAST = [
    "experiment=charlm",
    "trainer.max_epochs=2",
    # a tiny model trained for an epoch or two: the experiment's AR/TAR (sized for 2 x 256 units
    # over 26 epochs) would hold it near the unigram, so only the tests of them turn them on
    "model.ar=0",
    "model.tar=0",
    "model.encoder.hidden_size=16",
    "model.embedding_size=8",
    "data.batch_size=4",
    "data.bptt=16",
    "data.ngram_max_order=3",
    "callbacks.learning_rate_monitor=null",
    "trainer.enable_progress_bar=false",
]


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory) -> tuple[Path, dict[str, float], str]:
    """A short run on a small text file: its directory, metrics and corpus path."""
    root = tmp_path_factory.mktemp("charlm")
    corpus = _text_file(root, PROSE * 30)
    overrides = [*LM_FAST, f"data.file={corpus}", "dynamic_eval.lr=0.05"]
    cfg = compose_config("train", overrides, root / "run")
    return root / "run", train(cfg), corpus


def test_training_logs_bpc_perplexity_and_baselines_on_the_same_text(lm_run):
    _, metrics, _ = lm_run
    keys = ("val/bpc", "test/bpc", "test/ppl", "test/bpc_unigram", "test/bpc_ngram")
    for key in (*keys, "val/bpc_dynamic", "test/bpc_dynamic"):
        assert math.isfinite(metrics[key]), key
    assert math.isclose(metrics["test/ppl"], 2 ** metrics["test/bpc"], rel_tol=1e-4)
    assert metrics["test/bpc_ngram"] < metrics["test/bpc_unigram"]
    assert metrics["test/unk_chars"] == 0
    # what fitted the n-gram baseline, in the run's metrics.json: here all the training text
    run_dir, _, _ = lm_run
    written = json.loads((run_dir / "metrics.json").read_text())
    fitted = written["data/ngram_fit_chars"]
    assert fitted == written["data/train_chars"] == metrics["data/train_chars"]
    assert 0.7 * len(PROSE * 30) < written["data/train_chars"] < len(PROSE * 30)


def test_checkpoint_restores_vocabulary_and_eval_scores_a_new_file(lm_run, tmp_path):
    run_dir, metrics, corpus = lm_run
    best = run_dir / "checkpoints" / "best.ckpt"
    _, data, model = restore(load_checkpoint(best), best)
    assert isinstance(model, LanguageModel)
    assert data.vocab.chars == sorted(set(Path(corpus).read_text()))  # restored, not refitted
    assert data.parts == {}  # no text read to restore
    new = _text_file(tmp_path, "it was the age of times, ~ new", "new.txt")
    out = tmp_path / "eval"
    result = _run(
        [
            "-m",
            "rnnlab.eval",
            f"ckpt_path={best}",
            f"data.file={new}",
            f"hydra.run.dir={out}",
            "dynamic_eval.lr=0.05",
        ],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    scored = json.loads((out / "metrics.json").read_text())
    assert scored["test/unk_chars"] == 1  # '~' is not in the training text
    assert scored["test/bpc"] != metrics["test/bpc"]
    assert math.isfinite(scored["test/bpc_dynamic"])  # the new file, read dynamically
    # its baselines were fitted on the same training characters as the run's
    assert scored["data/ngram_fit_chars"] == metrics["data/ngram_fit_chars"]


def test_the_rms_variant_reads_the_models_own_training_part(lm_run, tmp_path):
    """Scoring the checkpoint's corpus or another file, the gradients' RMS comes from the
    training part of the text the model was trained on (read again, as for the baselines)."""
    run_dir, metrics, _ = lm_run
    best = run_dir / "checkpoints" / "best.ckpt"
    rms = ["dynamic_eval.lr=0.001", "dynamic_eval.rms=true"]
    new = _text_file(tmp_path, "it was the age of times", "new.txt")
    for name, more in (("own", []), ("file", [f"data.file={new}"])):
        out = tmp_path / name
        result = _run(
            ["-m", "rnnlab.eval", f"ckpt_path={best}", f"hydra.run.dir={out}", *more, *rms],
            tmp_path,
        )
        assert result.returncode == 0, result.stderr
        assert "gradient RMS over the training part" in result.stdout + result.stderr
        scored = json.loads((out / "metrics.json").read_text())
        assert math.isfinite(scored["test/bpc_dynamic"]), name
    assert scored["test/bpc_dynamic"] != metrics["test/bpc_dynamic"]


def _generate_cfg(tmp_path: Path, ckpt: Path, *overrides: str):
    return compose_config(
        "generate", [f"ckpt_path={ckpt}", "prompt=it was", "length=60", *overrides], tmp_path
    )


def test_generate_is_deterministic_per_seed_and_writes_its_output(lm_run, tmp_path, capsys, caplog):
    best = lm_run[0] / "checkpoints" / "best.ckpt"
    first = generate(_generate_cfg(tmp_path, best, "seed=1"))
    assert first == generate(_generate_cfg(tmp_path, best, "seed=1"))
    assert first != generate(_generate_cfg(tmp_path, best, "seed=2"))
    assert first.startswith("it was") and len(first) == len("it was") + 60
    output = tmp_path / "sample.txt"
    caplog.set_level(logging.INFO, logger="rnnlab.generate")
    generate(_generate_cfg(tmp_path, best, "seed=1", f"output={output}"))
    assert output.read_text() == first
    # where the text went, and the run directory (a listing of what is there)
    assert caplog.messages == [
        f"wrote {len(first)} characters to {output}; run directory: {tmp_path} (sample.txt)"
    ]
    # the command prints the text alone on stdout (logs go to stderr)
    result = _run(
        [
            "-m",
            "rnnlab.generate",
            f"ckpt_path={best}",
            "prompt=it was",
            "length=60",
            "seed=1",
            f"hydra.run.dir={tmp_path / 'g'}",
        ],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == first + "\n"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("temperature=0", "temperature=0: must be > 0"),
        ("length=0", "length=0: give the number of characters"),
        ("top_k=-1", "top_k=-1: must be >= 0"),
        ("top_k=1.5", "top_k=1.5: must be an integer"),
        ("prompt=ZZZ", "prompt='ZZZ' holds only characters the model never saw"),
        ("prompt=''", "prompt='' is empty"),
    ],
)
def test_generate_refuses_bad_arguments_and_writes_nothing(lm_run, tmp_path, override, message):
    output = tmp_path / "sample.txt"
    best = lm_run[0] / "checkpoints" / "best.ckpt"
    with pytest.raises(ConfigError, match=re.escape(message)):
        generate(_generate_cfg(tmp_path, best, override, f"output={output}"))
    assert not output.exists()


def test_generate_command_fails_in_one_line_and_leaves_no_run_dir(lm_run, tmp_path):
    best = lm_run[0] / "checkpoints" / "best.ckpt"
    output, out_dir = tmp_path / "sample.txt", tmp_path / "gen"
    result = _run(
        [
            "-m",
            "rnnlab.generate",
            f"ckpt_path={best}",
            "temperature=-1",
            f"output={output}",
            f"hydra.run.dir={out_dir}",
        ],
        tmp_path,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith("error: temperature=-1")
    assert not output.exists() and not out_dir.exists()


def test_sampling_leaves_training_state_and_global_random_state_alone():
    vocab = Vocabulary(list("abc "))
    model = _model(len(vocab)).train()
    before = torch.random.get_rng_state()
    one = sample_text(model, vocab, "ab", 30, temperature=0.5, top_k=2, seed=4)
    assert model.training and torch.equal(before, torch.random.get_rng_state())
    assert one == sample_text(model, vocab, "ab", 30, temperature=0.5, top_k=2, seed=4)
    assert len(one) == 30 and set(one) <= set("abc ")


def test_the_generate_method_draws_as_the_sampler_does_even_at_a_tiny_temperature():
    vocab = Vocabulary(list("abc "))
    model = _model(len(vocab)).train()
    for temperature, top_k in ((0.7, 0), (1.0, 2), (1e-300, 0)):
        ids = model.generate(
            vocab.encode("ab").tolist(), 25, temperature, top_k, torch.Generator().manual_seed(9)
        )
        text = sample_text(model, vocab, "ab", 25, temperature, top_k, seed=9)
        assert vocab.decode(ids) == text and model.training
    # at 1e-300 the draw is greedy: float32 division would have made inf and NaN of it
    with torch.no_grad():
        greedy = model.generate([1], 1, 1e-300, 0, torch.Generator().manual_seed(0))
        assert greedy[0] == int(model(torch.tensor([[1]]))[0][0, -1, 1:].argmax()) + 1


@pytest.mark.parametrize(
    ("text", "settings", "message"),
    [
        ("", {}, "the train part has 0 characters"),
        ("short text", {}, "fewer than data.batch_size x (data.bptt + 1)"),
        (b"\x00\x01binary" * 100, {}, "looks binary (a NUL byte at offset 0)"),
        (
            "caf\u00e9 " * 200,
            {"encoding": "ascii"},
            "offset 3 is not valid ascii; set data.encoding",
        ),
        (PROSE * 30, {"encoding": "klingon"}, "data.encoding='klingon' is not an encoding"),
    ],
)
def test_bad_text_is_refused_in_one_line(tmp_path, text, settings, message):
    path = tmp_path / "corpus.txt"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    data = TextDataModule(file=str(path), batch_size=4, bptt=16, **settings)
    with pytest.raises((ConfigError, DataError), match=re.escape(message)) as caught:
        data.setup()
    assert len(str(caught.value).splitlines()) == 1


def test_bad_text_command_exits_2_and_leaves_no_run_dir(tmp_path):
    path = tmp_path / "corpus.bin"
    path.write_bytes(b"\x00\x01binary" * 100)
    run_dir = tmp_path / "run"
    result = _run(
        ["-m", "rnnlab.train", *LM_FAST, f"data.file={path}", f"hydra.run.dir={run_dir}"],
        tmp_path,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "looks binary" in result.stderr
    assert not run_dir.exists()


def test_generate_refuses_a_classifier_checkpoint(tmp_path):
    cfg = compose_config(
        "train",
        [*FAST, "trainer.max_epochs=1", "+trainer.limit_train_batches=1", "test=false"],
        tmp_path / "clf",
    )
    train(cfg)
    best = tmp_path / "clf" / "checkpoints" / "best.ckpt"
    with pytest.raises(DataError, match="holds a SequenceClassifier, not a language model"):
        generate(compose_config("generate", [f"ckpt_path={best}"], tmp_path))


def test_predict_refuses_a_language_model_checkpoint_in_one_line(lm_run, tmp_path):
    from rnnlab.predict import predict

    run_dir, _, corpus = lm_run
    output = tmp_path / "predictions.csv"
    overrides = [f"ckpt_path={run_dir / 'checkpoints' / 'best.ckpt'}", f"input={corpus}"]
    cfg = compose_config("predict", [*overrides, f"output={output}"], tmp_path)
    with pytest.raises(ConfigError) as info:
        predict(cfg)
    assert str(info.value) == (
        "this task has no prediction file format; a language model samples text with "
        "rnnlab.generate ckpt_path=... and scores one with rnnlab.eval ckpt_path=... data.file=..."
    )
    assert not output.exists()


def test_bf16_mixed_precision_with_clipping_and_scheduler_trains(tmp_path):
    corpus = _text_file(tmp_path, PROSE * 30)
    overrides = [*LM_FAST, f"data.file={corpus}", "trainer.precision=bf16-mixed"]
    overrides += ["data.random_bptt=true", "trainer.max_epochs=1"]  # bf16 is emulated on CPUs
    cfg = compose_config("train", overrides, tmp_path / "run")
    metrics = train(cfg)
    assert math.isfinite(metrics["test/bpc"]) and metrics["test/bpc"] < metrics["test/bpc_unigram"]


@pytest.mark.slow
def test_ddp_on_two_processes_matches_one_process(tmp_path):
    corpus = _text_file(tmp_path, PROSE * 30)
    common = [*LM_FAST, f"data.file={corpus}", "trainer.max_epochs=2", "data.eval_streams=3"]
    # dropout masks are drawn per process, so only a model without dropout trains the same
    common += ["model.dropout=0", "model.encoder.dropout=0"]
    one = _run(
        ["-m", "rnnlab.train", *common, "data.batch_size=4", f"hydra.run.dir={tmp_path / 'one'}"],
        tmp_path,
        timeout=600,
    )
    two = _run(
        [
            "-m",
            "rnnlab.train",
            *common,
            "data.batch_size=2",
            "trainer=ddp_cpu",
            "trainer.devices=2",
            f"hydra.run.dir={tmp_path / 'two'}",
        ],
        tmp_path,
        timeout=600,
    )
    assert one.returncode == 0, one.stderr[-3000:]
    assert two.returncode == 0, two.stderr[-3000:]
    a = json.loads((tmp_path / "one" / "metrics.json").read_text())
    b = json.loads((tmp_path / "two" / "metrics.json").read_text())
    for key in ("val/bpc", "test/bpc", "test/bpc_ngram", "train/bpc"):
        assert math.isclose(a[key], b[key], rel_tol=1e-4), (key, a[key], b[key])


@pytest.mark.parametrize("vocab", [[2**40], ["a"], [97, 97], [0], "abc"])
def test_a_crafted_vocabulary_in_a_checkpoint_is_refused(lm_run, tmp_path, vocab):
    from rnnlab.checkpoint import DATA_KEY

    checkpoint = load_checkpoint(lm_run[0] / "checkpoints" / "best.ckpt")
    checkpoint[DATA_KEY]["vocab"] = vocab
    path = tmp_path / "crafted.ckpt"
    torch.save(checkpoint, path)
    with pytest.raises(DataError, match="the data state is not what rnnlab wrote"):
        restore(load_checkpoint(path), path)
