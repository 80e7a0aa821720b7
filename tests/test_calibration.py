"""Spread calibration (rnnlab.models.calibration, model.calibration=spread): widening keeps the
median and stretches every quantile about it, the search recovers the factor that calibrates a
too narrow forecast, each validation half is scored with the other half's factor, and the
forecaster fits the factor on validation only, keeps it in its checkpoint and applies it to its
test metrics and predictions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnlab.batch import Batch, TargetScaling
from rnnlab.checkpoint import load_checkpoint
from rnnlab.models import intervals
from rnnlab.models.calibration import FACTORS, SpreadSearch
from rnnlab.models.distributions import Normal, StudentT
from rnnlab.models.predictive import Probabilistic, Quantiles, Samples
from rnnlab.models.regressor import SequenceRegressor
from rnnlab.utils.errors import ConfigError
from tests.test_predict import _train
from tests.test_predictive import _model as _small_model
from tests.test_probabilistic_forecast import _overrides, _sales, _test_outputs

LEVELS = [0.025, 0.1, 0.5, 0.9, 0.975]
GRID_STEP = math.log(3) / 20  # FACTORS are this far apart in log


def _scaling(rows: int) -> TargetScaling:
    shift = torch.linspace(-5, 5, rows, dtype=torch.float64)[:, None]
    return TargetScaling(shift=shift, scale=torch.full((rows, 1), 2.5, dtype=torch.float64))


def _values(output: Probabilistic, seed: int) -> torch.Tensor:
    """Valid parameters (or draws) for 4 windows, 3 steps, 1 target."""
    raw = torch.randn(
        4, 3, 1, 64, generator=torch.Generator().manual_seed(seed), dtype=torch.float64
    )
    if isinstance(output, Samples):
        return raw * 3.0 + 1.0
    return output.arrange(raw[..., : output.width])


@settings(max_examples=40, deadline=None)
@given(
    kind=st.sampled_from(["normal", "student_t", "quantiles", "samples"]),
    factor=st.floats(0.2, 5.0),
    seed=st.integers(0, 2**16),
)
def test_widening_stretches_every_quantile_about_the_median(kind, factor, seed):
    output = {
        "normal": Normal(),
        "student_t": StudentT(),
        "quantiles": Quantiles(LEVELS),
        "samples": Samples(),
    }[kind]
    values, scaling = _values(output, seed), _scaling(4)
    before = output.quantiles(values, scaling, LEVELS).double()
    after = output.quantiles(output.widen(values, factor), scaling, LEVELS).double()
    median = before[..., 2:3]
    torch.testing.assert_close(after, median + factor * (before - median), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(
        output.point(output.widen(values, factor), scaling).double(),
        output.point(values, scaling).double(),
    )


def _normal_forecasts(rows: int) -> tuple[torch.Tensor, TargetScaling]:
    """N(0, 1) forecasts in original units for ``rows`` windows of 2 steps."""
    values = torch.zeros(rows, 2, 1, 2, dtype=torch.float64)
    values[..., 1] = 1.0
    scaling = TargetScaling(
        shift=torch.zeros(rows, 1, dtype=torch.float64),
        scale=torch.ones(rows, 1, dtype=torch.float64),
    )
    return values, scaling


def test_the_search_recovers_the_factor_that_calibrates_a_too_narrow_forecast():
    values, scaling = _normal_forecasts(3000)
    actual = 1.5 * torch.randn(
        3000, 2, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    search = SpreadSearch(Normal())
    for part in torch.arange(3000).split(256):
        search.update(
            values[part], TargetScaling(scaling.shift[part], scaling.scale[part]), actual[part]
        )
    found = search.compute()
    assert abs(math.log(found["spread_factor"].item() / 1.5)) <= GRID_STEP
    assert found["coverage_80_calibrated"].item() == pytest.approx(0.8, abs=0.02)
    assert found["coverage_95_calibrated"].item() == pytest.approx(0.95, abs=0.01)
    uncalibrated = intervals.crps_normal(torch.zeros(()), torch.ones(()), actual).mean()
    assert found["crps_calibrated"].item() < uncalibrated.item()


def test_each_validation_half_is_scored_with_the_other_halfs_factor():
    """Even windows (fold 0) land on the median, odd ones 3 away: each fold alone would pick an
    end of the grid, and the cross-fitted CRPS is each fold's CRPS at the other's factor. The
    windows come in batches of odd size, so a fold must follow the window, not the batch; the
    actuals come in float32, as a batch's targets do, and are scored in float64."""
    rows = 8
    values, scaling = _normal_forecasts(rows)
    actual = torch.zeros(rows, 2, 1, dtype=torch.float64)
    actual[1::2] = 3.0
    search = SpreadSearch(Normal())
    for part in (torch.arange(0, 3), torch.arange(3, 6), torch.arange(6, rows)):
        part_scaling = TargetScaling(scaling.shift[part], scaling.scale[part])
        search.update(values[part], part_scaling, actual[part].float())
    found = search.compute()

    def crps(factor: float, rows_of: slice) -> torch.Tensor:
        return intervals.crps_normal(
            torch.zeros((), dtype=torch.float64),
            torch.tensor(factor, dtype=torch.float64),
            actual[rows_of],
        ).sum()

    smallest, largest = FACTORS[0].item(), FACTORS[-1].item()
    expected = (
        crps(largest, slice(0, None, 2)) + crps(smallest, slice(1, None, 2))
    ) / actual.numel()
    assert found["crps_calibrated"].item() == pytest.approx(expected.item(), rel=1e-12)
    # nothing inside [-z s, z s] for the odd windows at s = 1/3; everything for the even ones
    assert found["coverage_80_calibrated"].item() == pytest.approx(0.5)
    totals = [crps(f, slice(None)).item() for f in FACTORS.tolist()]
    assert found["spread_factor"].item() == FACTORS[int(np.argmin(totals))].item()
    search.reset()
    assert search.windows_seen == 0


def test_an_actual_on_an_interval_end_is_inside_it():
    """Draws 1..10: at factor 1 the 80 % interval is [1, 9] (the draws at 0.1 and 0.9), and
    actuals at either end count as covered."""
    assert FACTORS[20].item() == 1.0
    draws = torch.arange(1.0, 11.0, dtype=torch.float64).expand(2, 1, 1, 10)
    search = SpreadSearch(Samples())
    search.update(draws, _scaling(2), torch.tensor([1.0, 9.0], dtype=torch.float64).view(2, 1, 1))
    torch.testing.assert_close(search.inside[:, 20, 0], torch.ones(2, dtype=torch.float64))


def test_the_sums_of_two_processes_merge_into_the_search_over_all_windows():
    """Under DDP each process sums its own windows and torchmetrics adds the sums up: merged,
    two parts give what one search over every window gives, even where one process has seen
    too few windows to fill both folds."""
    values, scaling = _normal_forecasts(21)
    actual = 1.3 * torch.randn(21, 2, 1, generator=torch.Generator().manual_seed(3))
    whole, first, second = (SpreadSearch(Normal()) for _ in range(3))
    whole.update(values, scaling, actual)
    for search, part in ((first, slice(0, 20)), (second, slice(20, 21))):
        search.update(
            values[part], TargetScaling(scaling.shift[part], scaling.scale[part]), actual[part]
        )
    first.merge_state(second)
    assert not math.isnan(whole.compute()["crps_calibrated"].item())
    for key, value in whole.compute().items():
        torch.testing.assert_close(first.compute()[key], value, msg=key)


def test_without_windows_the_factor_stays_and_one_window_cannot_be_cross_fitted():
    search = SpreadSearch(Normal())
    assert search.compute() == {"spread_factor": 1.0}
    values, scaling = _normal_forecasts(1)
    search.update(values, scaling, torch.ones(1, 2, 1, dtype=torch.float64))
    found = search.compute()
    assert math.isnan(found["crps_calibrated"].item())
    assert math.isnan(found["coverage_80_calibrated"].item())
    assert found["spread_factor"].item() in FACTORS.tolist()


def _model(calibration="spread", distribution="normal", quantiles=None) -> SequenceRegressor:
    # test_predictive's model (relative, as forecasting's), with the calibration setting
    return _small_model(distribution, quantiles, calibration=calibration)


@pytest.mark.parametrize(
    ("distribution", "calibration", "message"),
    [
        (None, "spread", r"model.calibration=spread widens .* output \(point\) has none"),
        ("negative_binomial", "spread", r"output \(negative_binomial\) has none to widen"),
        ("normal", "sprad", "model.calibration"),
    ],
)
def test_a_calibration_the_output_cannot_take_is_refused_in_one_line(
    distribution, calibration, message
):
    with pytest.raises(ConfigError, match=message) as refused:
        _model(calibration, distribution)
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize(("distribution", "quantiles"), [("student_t", None), (None, LEVELS)])
def test_predictions_are_widened_by_the_models_factor(distribution, quantiles):
    model = _model("spread", distribution, quantiles)
    x = torch.randn(5, 6, 2, generator=torch.Generator().manual_seed(1))
    batch = Batch(
        x=x,
        lengths=torch.tensor([6, 6, 4, 5, 6]),
        scaling=TargetScaling(shift=torch.full((5, 1), 3.0), scale=torch.full((5, 1), 2.0)),
    )
    with torch.no_grad():
        plain = model.predict_step(batch, 0)
        model.spread_factor.fill_(2.0)
        wide = model.predict_step(batch, 0)
    torch.testing.assert_close(wide["prediction"], plain["prediction"])
    middle = plain["prediction"][..., None]
    torch.testing.assert_close(wide["quantiles"], middle + 2 * (plain["quantiles"] - middle))
    assert "spread_factor" in model.state_dict()
    assert "spread_factor" not in _model("none").state_dict()


@pytest.fixture(scope="module")
def sales_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "sales.csv"
    _sales().to_csv(path, index=False)
    return path


def test_a_calibrated_run_fits_on_validation_keeps_its_factor_and_tests_with_it(
    tmp_path_factory, sales_csv
):
    plain_ckpt, plain = _train(tmp_path_factory, _overrides(sales_csv, "model.distribution=normal"))
    ckpt, metrics = _train(
        tmp_path_factory,
        _overrides(sales_csv, "model.distribution=normal", "model.calibration=spread"),
    )
    # validation scores the forecasts as trained: the search changes nothing it reads
    for key in ("val/crps", "val/coverage_80", "val/loss", "test/mae"):
        assert metrics[key] == pytest.approx(plain[key], rel=1e-6), key
    factor = load_checkpoint(ckpt)["state_dict"]["spread_factor"].item()
    assert min(abs(factor - f) for f in FACTORS.tolist()) < 1e-6  # float32 in the buffer
    for key in ("crps", "coverage_80", "coverage_95"):
        assert np.isfinite(metrics[f"val/{key}_calibrated"])
    # the test metrics are those of the widened quantiles rnnlab.predict gives
    actual, quantiles, _, _ = _test_outputs(ckpt)
    inside = ((quantiles[..., 0] <= actual) & (actual <= quantiles[..., 2])).double().mean()
    assert metrics["test/coverage_80"] == pytest.approx(inside.item(), abs=1e-6)
    _, plain_quantiles, _, _ = _test_outputs(plain_ckpt)
    median = plain_quantiles[..., 1:2]
    torch.testing.assert_close(
        quantiles, median + factor * (plain_quantiles - median), rtol=1e-5, atol=1e-4
    )
