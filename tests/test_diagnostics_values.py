"""Gradient-flow diagnostics: the values the callback logs, against hand-computed ones.

The callback's hooks are called directly, on a tiny model with gradients and recurrent weights
set by hand and a trainer standing in for Lightning's (only the attributes the callback reads),
so every logged number, tag, step, histogram and figure line has a known value. Fast: no
training run, no files.
"""

from __future__ import annotations

import contextlib
import math
from types import SimpleNamespace
from typing import Any, cast

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from rnnlab.batch import Batch
from rnnlab.callbacks.diagnostics import (
    TINY,
    GradientFlowDiagnostics,
    first_over_last,
    gradient_flow_figure,
    profile_by_time,
    recurrent_weights,
    state_gradient_norms,
)
from rnnlab.models.encoder import RNNEncoder
from rnnlab.utils.errors import ConfigError


class _Board(TensorBoardLogger):
    """A TensorBoard logger that records what it is given instead of writing event files."""

    def __init__(self) -> None:  # no folder, no writer: nothing of the base class is used
        self.metrics: list[tuple[int | None, dict[str, float]]] = []
        self.histograms: list[tuple[str, torch.Tensor, int]] = []
        self.figures: list[tuple[str, Any, int]] = []

    @property
    def experiment(self) -> Any:
        return self

    def log_metrics(  # type: ignore[override]
        self, metrics: dict[str, float], step: int | None = None
    ) -> None:
        self.metrics.append((step, dict(metrics)))

    def add_histogram(self, tag: str, values: torch.Tensor, step: int) -> None:
        self.histograms.append((tag, values.detach().clone(), step))

    def add_figure(self, tag: str, figure: Any, step: int) -> None:
        self.figures.append((tag, figure, step))


class _CsvLike:
    """A logger that is not TensorBoard: scalars only."""

    def __init__(self) -> None:
        self.metrics: list[tuple[int | None, dict[str, float]]] = []

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.metrics.append((step, dict(metrics)))


def _trainer(
    step: int = 0,
    clip: float | None = None,
    algorithm: str = "norm",
    rank_zero: bool = True,
    loggers: tuple[Any, ...] = (),
) -> Any:
    return SimpleNamespace(
        global_step=step,
        gradient_clip_val=clip,
        gradient_clip_algorithm=algorithm,
        is_global_zero=rank_zero,
        loggers=list(loggers),
        precision_plugin=SimpleNamespace(train_step_context=contextlib.nullcontext),
    )


class _Tiny(L.LightningModule):
    """A two-layer bidirectional tanh RNN and a linear head; loss: mean squared error."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.encoder = RNNEncoder(
            2, hidden_size=3, num_layers=2, cell="rnn", bidirectional=True, pooling="last"
        )
        self.head = torch.nn.Linear(6, 1)

    def training_loss(self, batch: Batch) -> torch.Tensor:
        prediction = self.head(self.encoder(batch.x, batch.lengths)).squeeze(-1)
        return ((prediction - batch.y) ** 2).mean()


class _NoEncoder(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.head = torch.nn.Linear(2, 1)

    def training_loss(self, batch: Batch) -> torch.Tensor:
        return self.head(batch.x).sum()


def _batch() -> Batch:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(3, 5, 2, generator=generator)
    lengths = torch.tensor([5, 2, 4])
    x[1, 2:] = 0
    x[2, 4:] = 0
    return Batch(x=x, lengths=lengths, y=torch.tensor([0.5, -1.0, 2.0]))


def _set_grads(module: torch.nn.Module, value: float) -> dict[str, torch.Tensor]:
    """Every parameter's gradient a known tensor (``value`` times 1, 2, 3, ... in order)."""
    grads = {}
    for name, param in module.named_parameters():
        g = value * torch.arange(1, param.numel() + 1, dtype=param.dtype).reshape(param.shape)
        param.grad = g
        grads[name] = g
    return grads


def test_the_logged_gradient_norm_is_the_total_norm_of_every_gradient_before_clipping():
    model = _Tiny()
    grads = _set_grads(model, 0.01)
    board, csv = _Board(), _CsvLike()
    callback = GradientFlowDiagnostics(every_n_steps=1, figure_every_n_steps=1, histograms=False)
    callback.on_before_optimizer_step(_trainer(step=3, loggers=(board, csv)), model, None)
    expected = math.sqrt(sum(float((g.double() ** 2).sum()) for g in grads.values()))
    for logger in (board, csv):  # scalars go to every logger, at the trainer's step
        [(step, scalars)] = logger.metrics
        assert step == 3
        assert scalars["diagnostics/grad_norm"] == pytest.approx(expected, rel=1e-6)
        assert "diagnostics/clip_fraction" not in scalars  # no clipping configured


def test_parameters_without_a_gradient_are_left_out_and_no_gradient_logs_nothing():
    model = _Tiny()
    model.head.weight.grad = torch.tensor([[3.0, 0, 0, 0, 0, 4.0]])
    board = _Board()
    callback = GradientFlowDiagnostics(every_n_steps=1, figure_every_n_steps=1)
    callback.on_before_optimizer_step(_trainer(loggers=(board,)), model, None)
    [(_, scalars)] = board.metrics
    assert scalars["diagnostics/grad_norm"] == pytest.approx(5.0)
    # the weights' histograms all, the gradients' only where there is one
    tags = [tag for tag, _, _ in board.histograms]
    assert [t for t in tags if t.startswith("gradients/")] == ["gradients/head.weight"]
    assert len([t for t in tags if t.startswith("weights/")]) == len(list(model.parameters()))

    empty, fresh = _Board(), _Tiny()
    callback = GradientFlowDiagnostics(every_n_steps=1, figure_every_n_steps=1)
    callback.on_before_optimizer_step(_trainer(clip=1.0, loggers=(empty,)), fresh, None)
    assert empty.metrics == [] and empty.histograms == []
    assert callback._steps == 0 and callback._fired is None


def test_only_global_rank_zero_logs():
    model = _Tiny()
    _set_grads(model, 1.0)
    board = _Board()
    callback = GradientFlowDiagnostics(every_n_steps=1, figure_every_n_steps=1)
    trainer = _trainer(clip=1.0, rank_zero=False, loggers=(board,))
    callback.on_before_optimizer_step(trainer, model, None)
    callback.on_train_batch_start(trainer, model, _batch(), 0)
    callback.on_train_end(trainer, model)
    assert board.metrics == [] and board.histograms == [] and board.figures == []
    assert callback._steps == 0 and callback._fired is None


def _run_clipped_steps(
    norms: list[float], limit: float, every: int
) -> list[tuple[int | None, dict[str, float]]]:
    """One optimiser step per norm (the gradient one entry of that size), logged every
    ``every`` steps."""
    model = _NoEncoder()
    board = _Board()
    callback = GradientFlowDiagnostics(every_n_steps=every, figure_every_n_steps=every)
    callback.histograms = False
    for step, norm in enumerate(norms):
        model.head.weight.grad = torch.tensor([[norm, 0.0]])
        model.head.bias.grad = None
        callback.on_before_optimizer_step(
            _trainer(step=step, clip=limit, loggers=(board,)), model, None
        )
    return board.metrics


def test_the_clip_fraction_is_the_share_of_steps_since_the_last_log_over_the_limit():
    # step 0 logs alone (fired); steps 1-4 log at 4: 1.0 is the limit itself (not clipped),
    # 0.5 under, 2.0 and 3.0 over: 2 of 4; then steps 5-8: none over
    logs = _run_clipped_steps([2.0, 1.0, 0.5, 2.0, 3.0, 0.1, 0.2, 1.0, 0.3], limit=1.0, every=4)
    assert [step for step, _ in logs] == [0, 4, 8]
    fractions = [scalars["diagnostics/clip_fraction"] for _, scalars in logs]
    assert fractions == [1.0, 0.5, 0.0]
    assert [scalars["diagnostics/grad_norm"] for _, scalars in logs] == pytest.approx(
        [2.0, 3.0, 0.3]
    )


def test_value_clipping_fires_on_the_largest_entry_not_the_norm():
    model = _NoEncoder()
    board = _Board()
    callback = GradientFlowDiagnostics(every_n_steps=3, figure_every_n_steps=3, histograms=False)
    # limit 1.2; every norm is over it (1.41, 1.9, 1.61), the largest entries are 1.0, 1.2
    # (the limit itself: not clipped) and 1.6: one step of three clipped
    grads = [([1.0, -1.0], 0.0), ([-1.2, 0.9], 1.2), ([0.2, -1.6], 0.0)]
    for step, (weight, bias) in enumerate(grads, start=1):
        model.head.weight.grad = torch.tensor([weight])
        model.head.bias.grad = torch.tensor([bias])
        trainer = _trainer(step=step, clip=1.2, algorithm="value", loggers=(board,))
        callback.on_before_optimizer_step(trainer, model, None)
    [(logged_step, scalars)] = board.metrics
    assert logged_step == 3
    assert scalars["diagnostics/clip_fraction"] == pytest.approx(1 / 3)
    assert scalars["diagnostics/grad_norm"] == pytest.approx(math.hypot(0.2, 1.6))


def test_sigma_max_is_the_largest_singular_value_of_each_recurrent_weight():
    model = _Tiny()
    _set_grads(model, 1.0)
    # U diag(s) V^T with orthogonal U, V: singular values s
    q = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(2)))[0]
    expected = {}
    with torch.no_grad():
        for k, (name, param) in enumerate(model.encoder.rnn.named_parameters()):
            if name.startswith("weight_hh"):
                s = torch.tensor([0.5 + k, 0.3, 0.1])
                param.copy_(q @ torch.diag(s) @ q.T.roll(1, dims=0))
                expected[name] = 0.5 + k
    assert set(expected) == {
        "weight_hh_l0",
        "weight_hh_l0_reverse",
        "weight_hh_l1",
        "weight_hh_l1_reverse",
    }
    weights = recurrent_weights(model.encoder)
    assert set(weights) == set(expected)
    params = dict(model.encoder.rnn.named_parameters())
    assert all(torch.equal(weights[n], params[n]) for n in weights)
    board = _Board()
    callback = GradientFlowDiagnostics(every_n_steps=1, figure_every_n_steps=1, histograms=False)
    callback.on_before_optimizer_step(_trainer(loggers=(board,)), model, None)
    [(_, scalars)] = board.metrics
    sigmas = {k.removeprefix("diagnostics/sigma_max/"): v for k, v in scalars.items()}
    sigmas.pop("diagnostics/grad_norm")
    assert sigmas == pytest.approx(expected, rel=1e-5)


def test_a_model_without_an_rnn_encoder_logs_the_gradient_norm_only():
    model = _NoEncoder()
    model.head.weight.grad = torch.tensor([[0.6, 0.8]])
    board = _Board()
    callback = GradientFlowDiagnostics(every_n_steps=1, figure_every_n_steps=1, histograms=False)
    callback.on_before_optimizer_step(_trainer(loggers=(board,)), model, None)
    callback.on_train_batch_start(_trainer(loggers=(board,)), model, _batch(), 0)
    assert board.metrics == [(0, {"diagnostics/grad_norm": pytest.approx(1.0)})]
    assert callback.profiles == {}


def test_histograms_hold_each_parameter_and_gradient_every_figure_step_only():
    model = _Tiny()
    grads = _set_grads(model, 0.5)
    model.head.bias.grad = None
    board, csv = _Board(), _CsvLike()
    callback = GradientFlowDiagnostics(every_n_steps=1, figure_every_n_steps=2)
    for step in range(4):
        callback.on_before_optimizer_step(_trainer(step=step, loggers=(board, csv)), model, None)
    names = [name for name, _ in model.named_parameters()]
    expected_tags = [f"weights/{n}" for n in names]
    expected_tags += [f"gradients/{n}" for n in names if n != "head.bias"]
    for step in (0, 2):
        written = {tag: (values, s) for tag, values, s in board.histograms if s == step}
        assert sorted(written) == sorted(expected_tags)
        for name, param in model.named_parameters():
            assert torch.equal(written[f"weights/{name}"][0], param.detach())
            if name != "head.bias":
                assert torch.equal(written[f"gradients/{name}"][0], grads[name])
    assert {s for _, _, s in board.histograms} == {0, 2}
    assert len(board.histograms) == 2 * len(expected_tags)
    assert [s for s, _ in csv.metrics] == [0, 1, 2, 3]

    off = _Board()
    callback = GradientFlowDiagnostics(every_n_steps=1, figure_every_n_steps=2, histograms=False)
    callback.on_before_optimizer_step(_trainer(step=0, loggers=(off,)), model, None)
    assert off.histograms == [] and len(off.metrics) == 1


def test_first_over_last_is_the_geometric_mean_of_each_sequences_ratio():
    norms = torch.tensor([[1.0, 2.0, 4.0], [2.0, 8.0, math.nan], [0.0, 1.0, 1.0]])
    lengths = torch.tensor([3, 2, 1])
    # ratios 1/4, 2/8 and (a vanished gradient, floored at TINY) TINY/TINY = 1
    expected = math.exp((math.log(0.25) + math.log(0.25) + 0.0) / 3)
    assert first_over_last(norms, lengths) == pytest.approx(expected, rel=1e-6)


def test_profile_by_time_averages_over_the_sequences_valid_at_each_step():
    norms = torch.tensor([[1.0, 3.0, 2.0], [5.0, math.nan, math.nan]], dtype=torch.float64)
    assert torch.equal(profile_by_time(norms), torch.tensor([3.0, 3.0, 2.0], dtype=torch.float64))


def test_the_figure_draws_each_profile_against_its_step():
    profiles = {"l0": torch.tensor([1.0, 0.0, 4.0]), "l0_reverse": torch.tensor([2.0, 0.5])}
    figure = gradient_flow_figure(profiles, "step 7")
    assert tuple(figure.get_size_inches()) == (7.0, 3.5)
    [ax] = figure.axes
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == ["l0", "l0_reverse"]
    assert list(lines[0].get_xdata()) == [0, 1, 2]
    assert list(lines[0].get_ydata()) == pytest.approx([1.0, TINY, 4.0], rel=1e-6)
    assert list(lines[1].get_xdata()) == [0, 1]
    assert list(lines[1].get_ydata()) == [2.0, 0.5]
    assert ax.get_yscale() == "log"
    assert ax.get_xlabel() == "step t (reading order)"
    assert ax.get_ylabel() == "mean ‖∂L/∂h_t‖"
    assert ax.get_title() == "step 7"
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["l0", "l0_reverse"]
    assert legend.get_texts()[0].get_fontsize() == 8
    assert gradient_flow_figure(profiles).axes[0].get_title() == ""


def test_state_gradients_are_logged_and_drawn_on_due_steps_only():
    model = _Tiny()
    batch = _batch()
    model.train()
    expected = state_gradient_norms(model, model.encoder, batch)
    board, csv = _Board(), _CsvLike()
    callback = GradientFlowDiagnostics(every_n_steps=2, figure_every_n_steps=4)
    for step in range(7):
        trainer = _trainer(step=step, loggers=(board, csv))
        callback.on_train_batch_start(trainer, model, batch, 0)
        callback.on_train_batch_start(trainer, model, batch, 1)  # an accumulated micro-batch
    for logger in (board, csv):
        assert [step for step, _ in logger.metrics] == [0, 2, 4, 6]
        for _, ratios in logger.metrics:
            assert ratios == {
                f"diagnostics/grad_h_first_over_last/{name}": pytest.approx(
                    first_over_last(norms, batch.lengths)
                )
                for name, norms in expected.items()
            }
    assert set(callback.profiles) == {"l0", "l0_reverse", "l1", "l1_reverse"}
    for name, norms in expected.items():
        assert torch.equal(callback.profiles[name], profile_by_time(norms))
    assert callback._profile_step == 6
    # figures at steps 0 and 4, to TensorBoard only; at the end, the undrawn pass of step 6
    assert [(tag, step) for tag, _, step in board.figures] == [
        ("diagnostics/grad_h", 0),
        ("diagnostics/grad_h", 4),
    ]
    callback.on_train_end(_trainer(step=7, loggers=(board, csv)), model)
    assert [step for _, _, step in board.figures] == [0, 4, 6]
    [ax] = board.figures[-1][1].axes
    assert ax.get_title() == "step 6"
    assert [line.get_label() for line in ax.get_lines()] == list(expected)
    for line, name in zip(ax.get_lines(), expected, strict=True):
        profile = profile_by_time(expected[name]).clamp(min=TINY)
        assert list(line.get_ydata()) == pytest.approx(profile.tolist())
    callback.on_train_end(_trainer(step=7, loggers=(board,)), model)  # drawn: not again
    assert len(board.figures) == 3


def test_the_end_of_training_draws_nothing_already_drawn_or_never_measured():
    model = _Tiny()
    board = _Board()
    callback = GradientFlowDiagnostics(every_n_steps=2, figure_every_n_steps=2)
    callback.on_train_end(_trainer(loggers=(board,)), model)  # nothing measured yet
    callback.on_train_batch_start(_trainer(step=2, loggers=(board,)), model, _batch(), 0)
    assert [step for _, _, step in board.figures] == [2]
    callback.on_train_end(_trainer(step=3, loggers=(board,)), model)
    assert [step for _, _, step in board.figures] == [2]


def test_setup_needs_a_training_loss_for_fitting_only():
    callback = GradientFlowDiagnostics()

    class _Lossless(L.LightningModule):
        pass

    with pytest.raises(ConfigError, match="_Lossless has none"):
        callback.setup(_trainer(), _Lossless(), "fit")
    callback.setup(_trainer(), _Lossless(), "test")
    callback.setup(_trainer(), _Tiny(), "fit")


@pytest.mark.parametrize(
    ("device", "forked"),
    [(torch.device("cpu"), []), (torch.device("cuda"), [0]), (torch.device("cuda", 1), [1])],
)
def test_the_state_gradient_pass_forks_the_random_generator_of_the_batchs_device(
    monkeypatch, device, forked
):
    """Dropout draws on a GPU come from that device's generator: the pass must restore it (the
    CPU's is always restored). Checked without a GPU: the fork's ``devices`` is recorded."""
    calls: list[Any] = []

    @contextlib.contextmanager
    def fork_rng(devices: Any = None, **kwargs: Any) -> Any:
        calls.append(devices)
        yield

    monkeypatch.setattr(torch.random, "fork_rng", fork_rng)
    # three recorded directions of four steps; the loss weighs each state's entries by a known
    # factor (so |dL/dh_t| = factor * sqrt(3)), and one state (l0, step 2) never reaches it
    factors: dict[str, list[float | None]] = {
        "l0": [1.0, 2.0, None, 4.0],
        "l0_reverse": [5.0, 6, 7, 8],
        "l1": [9.0, 10, 11, 12],
    }
    recorded = [
        (layer, direction, [torch.ones(2, 3, requires_grad=True) for _ in range(4)])
        for layer, direction in ((0, 0), (0, 1), (1, 0))
    ]
    encoder = SimpleNamespace(impl="auto", recorded=None)

    class _Module:
        def training_loss(self, batch: Any) -> torch.Tensor:
            assert encoder.impl == "padded"  # the unrolled path, recording
            encoder.recorded.extend(recorded)
            terms = [
                f * h.sum()
                for (_, _, states), weights in zip(recorded, factors.values(), strict=True)
                for f, h in zip(weights, states, strict=True)
                if f is not None
            ]
            return torch.stack(terms).sum()

    batch = SimpleNamespace(
        x=SimpleNamespace(device=device, shape=(2, 4)), lengths=torch.tensor([4, 2])
    )
    norms = state_gradient_norms(cast(Any, _Module()), cast(Any, encoder), batch)
    assert calls == [forked]
    assert list(norms) == list(factors)
    for name, weights in factors.items():
        row = torch.tensor([0.0 if f is None else f for f in weights], dtype=torch.float64)
        expected = torch.stack([row, row]) * math.sqrt(3)
        expected[1, 2:] = math.nan  # past the second sequence's length
        torch.testing.assert_close(norms[name], expected, equal_nan=True)
    assert encoder.impl == "auto" and encoder.recorded is None
