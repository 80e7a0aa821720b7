"""Dynamic evaluation (rnnlab.dynamic_eval): each window scored before the step that learns
from it, so no score depends on a later character; with no step it is static scoring of one
stream; it adapts to what it read; the model itself is left unchanged; bad settings refused."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from rnnlab.dynamic_eval import (
    Settings,
    check_settings,
    dynamic_metrics,
    dynamic_nll,
    gradient_rms,
)
from rnnlab.models.encoder import RNNEncoder
from rnnlab.models.language import LanguageModel
from rnnlab.utils.errors import ConfigError

VOCAB = 12


def _model(seed: int = 0) -> LanguageModel:
    torch.manual_seed(seed)
    encoder = RNNEncoder(8, 16, num_layers=2, cell="lstm", bidirectional=False)
    optimizer = functools.partial(torch.optim.SGD, lr=0.1)
    return LanguageModel(encoder, VOCAB, optimizer, embedding_size=8, dropout=0.3)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    length=st.integers(3, 60),
    window=st.integers(1, 9),
    rms=st.booleans(),
    data=st.data(),
)
def test_no_score_depends_on_a_later_character(seed, length, window, rms, data):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, VOCAB, length)
    changed_at = data.draw(st.integers(1, length - 1))
    other = ids.copy()
    other[changed_at] = (ids[changed_at] + 1) % VOCAB
    model = _model()
    # the RMS variant's gradient RMS, from another text (a training part)
    scales = gradient_rms(model, rng.integers(0, VOCAB, 30), 5) if rms else None
    lr = 0.01 if rms else 0.5
    first = dynamic_nll(model, ids, window, lr=lr, decay=0.1, rms=scales)
    second = dynamic_nll(model, other, window, lr=lr, decay=0.1, rms=scales)
    assert len(first) == length - 1
    # score j is that of character j + 1: the ones before the changed character are the same
    assert first[: changed_at - 1].tolist() == second[: changed_at - 1].tolist()
    assert first[changed_at - 1] != second[changed_at - 1]


def test_without_a_step_it_is_static_scoring_of_one_stream():
    model = _model().eval()
    ids = np.random.default_rng(1).integers(0, VOCAB, 50)
    text = torch.as_tensor(ids)
    with torch.no_grad():
        logits, _ = model(text[None, :-1])
        static = F.cross_entropy(logits[0], text[1:], reduction="none").double().numpy()
    np.testing.assert_allclose(dynamic_nll(model, ids, 7, lr=1e-12, decay=0.0), static, atol=1e-5)


def test_it_adapts_to_what_it_read_and_leaves_the_model_unchanged():
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ids = np.tile(np.array([3, 7, 1, 9, 4]), 40)  # a text that repeats itself
    static = dynamic_nll(model, ids, 10, lr=1e-12, decay=0.0)
    dynamic = dynamic_nll(model, ids, 10, lr=1.0, decay=0.0)
    last = slice(150, None)  # after 30 readings of the cycle
    assert dynamic[last].mean() < 0.7 * static[last].mean()  # 1.32 against 2.38 nats
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert model.training  # as it was
    pulled_back = dynamic_nll(model, ids, 10, lr=1.0, decay=0.5)
    assert dynamic[last].mean() < pulled_back[last].mean()  # decay keeps it near the trained


class _Text:
    bptt = 8

    def __init__(self, **parts: np.ndarray) -> None:
        self.parts = parts


def test_metrics_name_test_bpc_dynamic_and_nothing_when_off():
    model = _model()
    rng = np.random.default_rng(3)
    data = _Text(val=rng.integers(0, VOCAB, 30), test=rng.integers(0, VOCAB, 40))
    on = check_settings(OmegaConf.create({"lr": 0.1, "decay": 0.02, "window": None}), model)
    assert on == Settings(0.1, 0.02, None, rms=False)
    metrics = dynamic_metrics(on, model, data)
    expected = {
        f"{part}/bpc_dynamic": pytest.approx(
            dynamic_nll(model, data.parts[part], 8, 0.1, 0.02).mean() / np.log(2)
        )
        for part in ("val", "test")
    }
    assert metrics == expected  # each part read from the tested weights
    only_test = _Text(test=data.parts["test"])
    assert dynamic_metrics(on, model, only_test) == {
        "test/bpc_dynamic": expected["test/bpc_dynamic"]
    }
    assert (
        check_settings(OmegaConf.create({"lr": 0.0, "decay": 0.0, "window": None}), model) is None
    )
    assert dynamic_metrics(None, model, data) == {}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"lr": -1.0}, r"dynamic_eval.lr=-1.0 must be a finite number > 0 \(0: off\)"),
        ({"lr": float("inf")}, "dynamic_eval.lr=inf"),
        ({"lr": 0.1, "decay": 1.0}, r"dynamic_eval.decay=1.0 must be in \[0, 1\)"),
        ({"lr": 0.1, "window": 0}, "dynamic_eval.window=0 must be a whole number >= 1"),
    ],
)
def test_bad_settings_are_refused_in_one_line(values, message):
    with pytest.raises(ConfigError, match=message):
        check_settings(OmegaConf.create({"decay": 0.0, "window": None, **values}), _model())


def test_a_model_that_does_not_read_text_is_refused():
    with pytest.raises(ConfigError, match="dynamic_eval applies to language models, not Linear"):
        check_settings(OmegaConf.create({"lr": 0.1}), torch.nn.Linear(2, 2))


def test_the_rms_is_that_of_each_windows_gradient_read_without_steps():
    model = _model()
    ids = np.random.default_rng(4).integers(0, VOCAB, 23)
    work = model.eval()
    params = [p for p in work.parameters() if p.requires_grad]
    squares, state, windows = [torch.zeros_like(p) for p in params], None, 0
    for start in range(0, len(ids) - 1, 5):
        text = torch.as_tensor(ids[start : start + 6])
        logits, state = work(text[None, :-1], state)
        loss = F.cross_entropy(logits[0], text[1:])
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        state = tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
        squares = [q + (0 if g is None else g**2) for q, g in zip(squares, grads, strict=True)]
        windows += 1
    found = gradient_rms(model, ids, 5)
    for expected, got in zip(squares, found, strict=True):
        torch.testing.assert_close(got, (expected / windows).sqrt(), rtol=1e-5, atol=1e-7)


def test_with_the_same_rms_everywhere_the_rms_variant_is_sgd_with_a_scaled_step():
    """Every RMS c: each step is lr / c times the gradient, and each decay the plain one (the
    RMS over its mean is 1)."""
    model = _model()
    ids = np.random.default_rng(5).integers(0, VOCAB, 40)
    same = [torch.full_like(p, 0.25) for p in model.parameters()]
    rms = dynamic_nll(model, ids, 7, lr=0.05, decay=0.1, rms=same)
    np.testing.assert_allclose(rms, dynamic_nll(model, ids, 7, lr=0.2, decay=0.1), rtol=1e-5)


def test_the_rms_variant_steps_less_where_the_gradient_was_large():
    """Two weights, RMS 1 and 100: the step on the second is divided by 100 and its decay
    multiplied by its RMS over the mean (capped at a full step back)."""
    from rnnlab.dynamic_eval import _scales

    rms = [torch.tensor([1.0, 100.0, 0.0])]
    steps, decays = _scales(rms, 0.02)
    mean = 101.0 / 3
    torch.testing.assert_close(steps[0], torch.tensor([1.0, 0.01, 1 / (1e-3 * mean)]))
    torch.testing.assert_close(decays[0], torch.tensor([0.02 / mean, 0.02 * 100 / mean, 0.0]))
    assert _scales(rms, 0.9)[1][0][1].item() == 1.0


def test_rms_metrics_read_the_training_part_and_need_one():
    model = _model()
    rng = np.random.default_rng(6)
    data = _Text(train=rng.integers(0, VOCAB, 50), test=rng.integers(0, VOCAB, 30))
    on = check_settings(OmegaConf.create({"lr": 0.01, "decay": 0.02, "rms": True}), model)
    assert on == Settings(0.01, 0.02, None, rms=True)
    rms = gradient_rms(model, data.parts["train"], 8)
    expected = dynamic_nll(model, data.parts["test"], 8, 0.01, 0.02, rms).mean() / np.log(2)
    assert dynamic_metrics(on, model, data) == {"test/bpc_dynamic": pytest.approx(expected)}
    with pytest.raises(ConfigError, match=r"dynamic_eval.rms=true reads .* set dynamic_eval.rms"):
        dynamic_metrics(on, model, _Text(test=data.parts["test"]))
    with pytest.raises(ConfigError, match=r"dynamic_eval\.rms=yes must be true or false"):
        check_settings(OmegaConf.create({"lr": 0.1, "rms": "yes"}), model)
