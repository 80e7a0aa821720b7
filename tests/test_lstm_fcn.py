"""LSTM-FCN / MLSTM-FCN (model/encoder=lstm_fcn): padding never changes a result, the masked
batch norm is BatchNorm1d on the valid steps, and a run trains, restores and refuses bad
settings in one line."""

from __future__ import annotations

import copy
import functools
import inspect
import json
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import example, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf
from torch import nn
from torch.nn.utils.rnn import pad_sequence

from rnnlab.checkpoint import load_checkpoint, restore
from rnnlab.models.language import LanguageModel
from rnnlab.models.lstm_fcn import LSTMFCNEncoder, MaskedBatchNorm1d
from rnnlab.models.regularisers import Regularisers
from rnnlab.models.tagger import SequenceTagger
from rnnlab.train import train
from rnnlab.utils.config import config_dir
from rnnlab.utils.errors import ConfigError, find_user_error
from tests.conftest import compose_config

FEATURES, HIDDEN = 3, 5
SMALL = {"filters": (4, 6, 4), "kernel_sizes": (8, 5, 3)}  # the papers' kernels, fewer filters
# a short real run: tiny branches, two epochs
FAST = [
    "model/encoder=lstm_fcn",
    "trainer.accelerator=cpu",
    "trainer.max_epochs=2",
    "model.encoder.hidden_size=8",
    "model.encoder.filters=[8,8,8]",
    "callbacks.learning_rate_monitor=null",
    "logger=csv",
]


def _sequences(lengths: list[int], seed: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(n, FEATURES, generator=generator) for n in lengths]


def _encoder(seed: int, **settings) -> LSTMFCNEncoder:
    """A small encoder whose batch norms have non-trivial affine parameters and running
    statistics (so eval mode tests them too), without the recurrent branch's dropout (whose
    masks differ between a batch and its sequences alone)."""
    torch.manual_seed(seed)
    encoder = LSTMFCNEncoder(FEATURES, HIDDEN, **{**SMALL, "branch_dropout": 0.0, **settings})
    with torch.no_grad():
        for module in encoder.modules():
            if isinstance(module, MaskedBatchNorm1d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_()
                module.running_mean.normal_()
                module.running_var.uniform_(0.5, 2.0)
    return encoder


CASES = {
    "lengths": st.lists(st.integers(1, 12), min_size=1, max_size=5),
    "cell": st.sampled_from(["rnn", "lstm", "gru"]),
    "bidirectional": st.booleans(),
    "pooling": st.sampled_from(["last", "mean", "max"]),
    "squeeze_excite": st.booleans(),
    "impl": st.sampled_from(["packed", "padded"]),
    "padding": st.sampled_from([0.0, 1e6, float("nan")]),
    "extra": st.integers(0, 3),  # padding past the longest sequence
    "seed": st.integers(0, 2**16),
}
# the corners: a single step alone, lengths all equal (no padding at all), length 1 beside longer
CORNERS = [
    {"lengths": [1, 1]},
    {"lengths": [6, 6, 6]},
    {"lengths": [1, 9, 4]},
]


def _corner(lengths: list[int]) -> dict:
    return {
        "lengths": lengths,
        "cell": "lstm",
        "bidirectional": True,
        "pooling": "last",
        "squeeze_excite": True,
        "impl": "padded",
        "padding": float("nan"),
        "extra": 1,
        "seed": 0,
    }


def _with_corners(test):
    for corner in CORNERS:
        test = example(**_corner(**corner))(test)
    return test


def _padded(sequences: list[torch.Tensor], padding: float, extra: int) -> torch.Tensor:
    x = pad_sequence(sequences, batch_first=True, padding_value=padding)
    return F.pad(x, (0, 0, 0, extra), value=padding)


@settings(max_examples=30, deadline=None, derandomize=True)
@_with_corners
@given(**CASES)
def test_padded_batch_equals_each_sequence_alone_in_eval_mode(
    lengths, padding, extra, seed, **settings
):
    encoder = _encoder(seed, **settings).eval()
    sequences = _sequences(lengths, seed)
    x = _padded(sequences, padding, extra)
    with torch.no_grad():
        batched = encoder(x, torch.tensor(lengths))
        alone = [encoder(s[None], torch.tensor([len(s)]))[0] for s in sequences]
    assert batched.shape == (len(lengths), encoder.output_size)
    torch.testing.assert_close(batched, torch.stack(alone), rtol=1e-5, atol=1e-5)


def _alone_with_pooled_statistics(
    encoder: LSTMFCNEncoder, sequences: list[torch.Tensor]
) -> torch.Tensor:
    """Training-mode outputs computed one sequence at a time, unpadded, from the encoder's own
    weights and plain torch functions; only each batch norm's statistics are pooled, over the
    valid steps of all sequences together (what one batch of them shares)."""
    recurrent = [encoder.rnn_branch(s[None], torch.tensor([len(s)]))[0] for s in sequences]
    hs = [s.T[None] for s in sequences]  # each (1, features, length)
    for block in encoder.blocks:
        with warnings.catch_warnings():  # padding="same" copies the input for even kernels
            warnings.simplefilter("ignore")
            convolved = [F.conv1d(h, block.conv.weight, padding="same") for h in hs]
        norm = block.norm
        pooled = F.batch_norm(
            torch.cat(convolved, dim=-1),
            norm.running_mean,
            norm.running_var,
            norm.weight,
            norm.bias,
            training=True,
            momentum=norm.momentum,
            eps=norm.eps,
        )
        hs = [torch.relu(h) for h in pooled.split([h.shape[-1] for h in convolved], dim=-1)]
        if block.excite is not None:
            hs = [h * block.excite.gate(h.mean(dim=-1))[:, :, None] for h in hs]
    fcn = [h.mean(dim=-1)[0] for h in hs]
    return torch.stack([torch.cat(pair) for pair in zip(recurrent, fcn, strict=True)])


def _weighted_sum(out: torch.Tensor) -> torch.Tensor:
    # a weighting that differs per unit, so no gradient cancels by symmetry
    return (out * torch.linspace(-1, 2, out.shape[-1])).sum()


@settings(max_examples=30, deadline=None, derandomize=True)
@_with_corners
@given(**CASES)
def test_padded_batch_in_training_equals_sequences_alone_with_pooled_statistics(
    lengths, padding, extra, seed, **settings
):
    """In training the batch norms use the batch's statistics: those of its sequences' valid
    steps, pooled. Outputs, every parameter's gradient and the running statistics equal those
    of the sequences run alone with the statistics pooled; the inputs' padding gets no
    gradient."""
    if sum(lengths) < 2:
        return  # batch statistics of one value: BatchNorm1d refuses to train on it
    encoder = _encoder(seed, **settings).train()
    reference = copy.deepcopy(encoder)
    sequences = _sequences(lengths, seed)
    x = _padded(sequences, padding, extra).requires_grad_(True)
    batched = encoder(x, torch.tensor(lengths))
    alone = _alone_with_pooled_statistics(reference, sequences)
    torch.testing.assert_close(batched, alone, rtol=1e-5, atol=1e-5)
    _weighted_sum(batched).backward()
    _weighted_sum(alone).backward()
    grads = dict(reference.named_parameters())
    for name, param in encoder.named_parameters():
        expected = grads[name].grad
        assert param.grad is not None and expected is not None, name
        torch.testing.assert_close(param.grad, expected, rtol=1e-4, atol=1e-5, msg=name)
    states = reference.state_dict()
    for name, buffer in encoder.named_buffers():
        if name.endswith("num_batches_tracked"):  # counted by the module, not F.batch_norm
            assert buffer == 1, name
        else:
            torch.testing.assert_close(buffer, states[name], rtol=1e-5, atol=1e-6, msg=name)
    assert x.grad is not None
    valid = torch.arange(x.shape[1])[None, :] < torch.tensor(lengths)[:, None]
    assert x.grad[valid].isfinite().all() and not x.grad[~valid].any()


@pytest.mark.parametrize("padding", [1e6, float("nan")])
@pytest.mark.parametrize("training", [True, False])
def test_padding_values_change_no_output_or_gradient(padding: float, training: bool):
    """Bit for bit: padding is replaced by zeros (torch.where) before anything reads it."""
    lengths = torch.tensor([4, 9, 1, 6])
    sequences = _sequences(lengths.tolist(), seed=3)
    results = []
    for value in (0.0, padding):
        encoder = _encoder(3, bidirectional=True, pooling="mean").train(training)
        x = pad_sequence(sequences, batch_first=True, padding_value=value).requires_grad_(True)
        out = encoder(x, lengths)
        _weighted_sum(out).backward()
        grads = {n: p.grad for n, p in encoder.named_parameters()}
        results.append((out, grads, x.grad, encoder.state_dict()))
    (out, grads, x_grad, state), (out_p, grads_p, x_grad_p, state_p) = results
    torch.testing.assert_close(out_p, out, rtol=0, atol=0)
    torch.testing.assert_close(x_grad_p, x_grad, rtol=0, atol=0)
    for name, grad in grads.items():
        torch.testing.assert_close(grads_p[name], grad, rtol=0, atol=0, msg=name)
    for name, value in state.items():
        torch.testing.assert_close(state_p[name], value, rtol=0, atol=0, msg=name)


def test_masked_batch_norm_equals_batch_norm_on_the_valid_steps():
    """Outputs, gradients (of the input and the affine parameters) and running statistics over
    three training batches, then eval-mode outputs: the same as nn.BatchNorm1d given only the
    valid steps; padding (NaN here) comes out as zeros and gets no gradient."""
    torch.manual_seed(0)
    channels = 6
    masked, plain = MaskedBatchNorm1d(channels), nn.BatchNorm1d(channels)
    with torch.no_grad():
        masked.weight.uniform_(0.5, 1.5)
        masked.bias.normal_()
    plain.load_state_dict(masked.state_dict())
    for lengths in ([5, 2, 7], [1, 3], [4, 4, 4, 4]):
        size = torch.tensor(lengths)
        valid = (torch.arange(max(lengths))[None, :] < size[:, None]).unsqueeze(1)
        h = torch.randn(len(lengths), channels, max(lengths)) * 3 + 2
        h = h.masked_fill(~valid, float("nan")).requires_grad_(True)
        out = masked(h, valid)
        # the valid steps alone, as (steps, channels): what BatchNorm1d normalises per channel
        steps = h.detach().transpose(1, 2)[valid[:, 0]].requires_grad_(True)
        expected = plain(steps)
        torch.testing.assert_close(out.transpose(1, 2)[valid[:, 0]], expected)
        assert not out[~valid.expand_as(out)].any()
        weights = torch.randn(channels)
        (out.transpose(1, 2)[valid[:, 0]] * weights).sum().backward()
        (expected * weights).sum().backward()
        assert steps.grad is not None and h.grad is not None
        torch.testing.assert_close(h.grad.transpose(1, 2)[valid[:, 0]], steps.grad)
        assert not h.grad[~valid.expand_as(h.grad)].any()
        for name in ("weight", "bias"):
            torch.testing.assert_close(getattr(masked, name).grad, getattr(plain, name).grad)
        masked.zero_grad()
        plain.zero_grad()
        for name, buffer in plain.named_buffers():
            torch.testing.assert_close(masked.get_buffer(name), buffer, msg=name)
    masked.eval()
    plain.eval()
    h = torch.randn(2, channels, 5)
    with torch.no_grad():
        torch.testing.assert_close(masked(h), plain(h))


def test_python_defaults_equal_the_shipped_config():
    loaded = OmegaConf.load(Path(config_dir()) / "model" / "encoder" / "lstm_fcn.yaml")
    shipped = OmegaConf.to_container(loaded)
    assert isinstance(shipped, dict)
    parameters = inspect.signature(LSTMFCNEncoder).parameters
    for key, value in shipped.items():
        if key in ("_target_", "input_size"):
            continue
        default = parameters[key].default
        assert (list(default) if isinstance(default, tuple) else default) == value, key
    assert set(parameters) - {"input_size"} <= set(shipped)


@pytest.mark.parametrize(
    "setting",
    ["locked_input_dropout", "locked_layer_dropout", "locked_output_dropout", "weight_drop"],
)
def test_each_regulariser_of_the_recurrent_branch_acts_in_training_only(setting):
    """With the setting at 0.5 the recurrent branch's part of the output differs in training
    from the same weights' with it at 0, the convolutional branch's part not at all (it never
    sees the masks); in evaluation the two are the same module."""
    off = _encoder(0, num_layers=2)
    on = LSTMFCNEncoder(
        FEATURES, HIDDEN, **{**SMALL, "branch_dropout": 0.0, "num_layers": 2, setting: 0.5}
    )
    on.load_state_dict(off.state_dict())
    lengths = [7, 3, 5]
    x = pad_sequence(_sequences(lengths, seed=4), batch_first=True)
    size = torch.tensor(lengths)
    branch = off.rnn_branch.output_size
    outputs = {}
    for mode in ("train", "eval"):
        for name, encoder in (("off", off), ("on", on)):
            encoder.train(mode == "train")
            torch.manual_seed(7)
            with torch.no_grad():
                outputs[mode, name] = encoder(x, size)
    trained_off, trained_on = outputs["train", "off"], outputs["train", "on"]
    assert not torch.allclose(trained_on[:, :branch], trained_off[:, :branch])
    torch.testing.assert_close(trained_on[:, branch:], trained_off[:, branch:], rtol=0, atol=0)
    torch.testing.assert_close(outputs["eval", "on"], outputs["eval", "off"], rtol=0, atol=0)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, dict[str, float]]:
    out = tmp_path_factory.mktemp("lstm_fcn")
    # the recurrent branch regularised, so the checkpoint stores and restores those settings
    regularised = ["model.encoder.locked_input_dropout=0.1", "model.encoder.weight_drop=0.2"]
    return out, train(compose_config("train", [*FAST, *regularised, "seed=3"], out))


def test_train_run_writes_metrics_and_its_checkpoint_restores(run):
    out, metrics = run
    assert json.loads((out / "metrics.json").read_text()) == pytest.approx(metrics)
    assert metrics["epochs"] == 2
    assert metrics["test/acc"] > 1 / 9  # two tiny epochs already beat chance on 9 speakers
    best = out / "checkpoints" / "best.ckpt"
    checkpoint = load_checkpoint(best)
    assert checkpoint["rnnlab_config"]["model"]["encoder"]["_target_"] == (
        "rnnlab.models.lstm_fcn.LSTMFCNEncoder"
    )
    _, datamodule, model = restore(checkpoint, best)
    assert isinstance(model.encoder, LSTMFCNEncoder)
    assert model.encoder.output_size == 8 + 8
    assert model.encoder.rnn_branch.regularisers == Regularisers(
        locked_input_dropout=0.1, weight_drop=0.2
    )
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, checkpoint["state_dict"][name], rtol=0, atol=0)
    # the restored model scores the test split as the run's own test did (best checkpoint)
    datamodule.setup("test")
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for batch in datamodule.test_dataloader():
            correct += int((model(batch.x, batch.lengths).argmax(-1) == batch.y).sum())
            total += len(batch.y)
    assert correct / total == pytest.approx(metrics["test/acc"], abs=1e-6)


def test_sequence_regression_trains_with_lstm_fcn(tmp_path):
    overrides = ["data=regression", "model=regressor", "debug=fdr", *FAST]
    metrics = train(compose_config("train", overrides, tmp_path))
    assert metrics["test/rmse"] > 0 and metrics["test/rmse"] < float("inf")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.encoder.pooling=none"], "model/encoder=lstm_fcn gives one vector per sequence"),
        (
            ["model.encoder.kernel_sizes=[8,5]"],
            "model.encoder.filters and model.encoder.kernel_sizes must be equally long",
        ),
        (
            ["experiment=copy", "model.encoder.pooling=last", "data.train_size=10"],
            "a per-step model reads every step's output, which LSTMFCNEncoder does not give",
        ),
    ],
)
def test_settings_that_cannot_work_are_refused_in_one_line(tmp_path, overrides, message):
    cfg = compose_config("train", [*FAST, *overrides], tmp_path)
    with pytest.raises(Exception) as info:
        train(cfg)
    error = find_user_error(info.value)
    assert error is not None and str(error).startswith(message), info.value
    assert "\n" not in str(error)


def test_step_by_step_use_is_refused_in_one_line():
    encoder = LSTMFCNEncoder(FEATURES, HIDDEN, **SMALL)
    optimizer = functools.partial(torch.optim.AdamW, lr=1e-3)
    for refused in (
        lambda: encoder.step(torch.zeros(2, FEATURES)),
        lambda: encoder.sequence(torch.zeros(2, 4, FEATURES)),
        lambda: LanguageModel(encoder, vocab_size=10, optimizer=optimizer),
        lambda: SequenceTagger(encoder, num_classes=3, optimizer=optimizer),
    ):
        with pytest.raises(ConfigError) as info:
            refused()
        assert "model/encoder=rnn" in str(info.value) and "\n" not in str(info.value)


def test_the_hybrid_names_itself_and_its_recurrent_branch():
    encoder = LSTMFCNEncoder(FEATURES, HIDDEN, **{**SMALL, "bidirectional": True})
    assert encoder.display_name() == f"LSTM-FCN (BiLSTM, {HIDDEN} units)"
