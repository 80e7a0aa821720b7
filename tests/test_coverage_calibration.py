"""Coverage calibration (rnnlab.models.coverage_calibration, model.calibration=coverage): each
central interval is stretched about the median until it holds its nominal share of the actuals it
was fitted on, outer factors never below inner ones (so quantiles stay in order), each
validation half is scored with the other half's factors, and the forecaster fits the factors on
validation only, keeps them in its checkpoint and applies them to its test metrics and
predictions."""

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
from rnnlab.models.coverage_calibration import (
    CoverageFit,
    central_pairs,
    fit_factors,
    scores,
)
from rnnlab.models.predictive import Quantiles
from rnnlab.utils.errors import ConfigError
from tests.test_calibration import _model, sales_csv  # noqa: F401 (a fixture)
from tests.test_predict import _train
from tests.test_probabilistic_forecast import _overrides, _test_outputs

LEVELS = (0.025, 0.1, 0.5, 0.9, 0.975)


def _identity(rows: int) -> TargetScaling:
    zeros = torch.zeros(rows, 1, dtype=torch.float64)
    return TargetScaling(shift=zeros, scale=torch.ones(rows, 1, dtype=torch.float64))


def _normal_quantiles(rows: int, scale: float = 1.0) -> torch.Tensor:
    """The quantiles at LEVELS of N(0, scale²) for ``rows`` windows of 2 steps, 1 target."""
    z = torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(LEVELS, dtype=torch.float64))
    return (scale * z).expand(rows, 2, 1, len(LEVELS)).clone()


def _inside(quantiles: torch.Tensor, actual: torch.Tensor, low: int, high: int) -> torch.Tensor:
    return ((quantiles[..., low] <= actual) & (actual <= quantiles[..., high])).double().mean()


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    rows=st.integers(1, 40),
    spread=st.floats(0.05, 20.0),
    skew=st.floats(-3.0, 3.0),
)
def test_fitted_intervals_hold_their_share_and_keep_their_order(seed, rows, spread, skew):
    """On the values it was fitted on, each stretched central interval holds at least its
    nominal share (the conformal rank guarantees it), the factors never shrink outwards, the
    stretched quantiles stay sorted and the median stays put, whatever the forecasts' errors."""
    generator = torch.Generator().manual_seed(seed)
    raw = torch.randn(rows, 3, 1, len(LEVELS), generator=generator, dtype=torch.float64)
    quantiles = Quantiles(LEVELS).arrange(raw)
    actual = spread * torch.randn(rows, 3, 1, generator=generator, dtype=torch.float64) + skew
    factors = fit_factors(quantiles, actual, LEVELS)
    assert factors[2] == 1.0
    assert factors[1] == factors[3] and factors[0] == factors[4]
    assert factors[0] >= factors[1] > 0
    wide = Quantiles(LEVELS).widen(quantiles, factors)
    assert bool((wide.diff(dim=-1) >= 0).all())
    torch.testing.assert_close(wide[..., 2], quantiles[..., 2])
    for low, high in ((1, 3), (0, 4)):
        nominal = LEVELS[high] - LEVELS[low]
        # the actual whose score is the factor lies on the stretched end, where rounding may put
        # it either side: the share may miss by that one value
        assert _inside(wide, actual, low, high) >= nominal - 1 / actual.numel() - 1e-12


def test_each_interval_gets_its_own_factor():
    """A forecast whose 80 % interval is twice too wide and whose 95 % interval is right: one
    spread factor would narrow both; coverage calibration narrows the inner one only (the outer
    one keeps a factor near 1, above the inner's), and both then cover about their share."""
    rows = 4000
    quantiles = _normal_quantiles(rows)
    quantiles[..., 1] *= 2.0
    quantiles[..., 3] *= 2.0  # the 80 % interval: ±2.56 instead of ±1.28
    generator = torch.Generator().manual_seed(0)
    actual = torch.randn(rows, 2, 1, generator=generator, dtype=torch.float64)
    factors = fit_factors(quantiles, actual, LEVELS)
    assert factors[1].item() == pytest.approx(0.5, abs=0.03)
    assert factors[0].item() == pytest.approx(1.0, abs=0.05)
    wide = Quantiles(LEVELS).widen(quantiles, factors)
    assert _inside(wide, actual, 1, 3).item() == pytest.approx(0.8, abs=0.002)
    assert _inside(wide, actual, 0, 4).item() == pytest.approx(0.95, abs=0.002)


def test_an_actual_scores_the_stretch_that_just_holds_it():
    quantiles = torch.tensor([[-4.0, -1.0, 0.0, 2.0, 3.0]], dtype=torch.float64)
    actual = torch.tensor([-3.0, 5.0, 0.0], dtype=torch.float64)
    found = scores(quantiles.expand(3, 5), actual, (1, 3))
    torch.testing.assert_close(found, torch.tensor([3.0, 2.5, 0.0], dtype=torch.float64))
    factors = torch.tensor([1.0, 2.5, 1.0, 2.5, 1.0], dtype=torch.float64)
    wide = Quantiles(LEVELS).widen(quantiles.expand(3, 5), factors)
    assert wide[1, 3].item() == 5.0  # exactly on the end: inside


def test_a_pairs_factor_is_the_score_at_the_conformal_rank():
    """Ten actuals 1..10 above a median of 0 with 80 % ends at ±1 score 1..10: the rank
    ⌈(10 + 1) · 0.8⌉ = 9 gives 9. The 95 % ends at ±2 score 0.5..5, rank ⌈11 · 0.95⌉ = 11 is
    past the last, so the largest, 5; below the inner pair's 9, the outer pair takes 9."""
    quantiles = torch.tensor([-2.0, -1.0, 0.0, 1.0, 2.0], dtype=torch.float64).expand(10, 5)
    actual = torch.arange(1.0, 11.0, dtype=torch.float64)
    assert fit_factors(quantiles, actual, LEVELS).tolist() == [9.0, 9.0, 1.0, 9.0, 9.0]
    wide = fit_factors(quantiles * 3, actual, LEVELS)  # ends at ±3 and ±6: scores a third
    assert wide.tolist() == pytest.approx([3.0, 3.0, 1.0, 3.0, 3.0])


def _filled(rows: int, actual: torch.Tensor, batches: list[slice]) -> CoverageFit:
    fit = CoverageFit(Quantiles(LEVELS))
    values = _normal_quantiles(rows)  # Quantiles' values are its quantiles (normalised units)
    for part in batches:
        fit.update(values[part], _identity(part.stop - part.start), actual[part].float())
    return fit


def test_each_validation_half_is_scored_with_the_other_halfs_factors():
    """Windows come in batches of odd size, so a fold must follow the window, not the batch.
    Each fold's own factors scored on the other fold give the cross-fitted metrics."""
    rows = 40
    generator = torch.Generator().manual_seed(1)
    # float32 values (a batch's targets are), held in float64
    actual = torch.randn(rows, 2, 1, generator=generator).double()
    actual[1::2] *= 3.0  # odd windows' errors three times the even ones'
    actual = actual.float().double()
    fit = _filled(rows, actual, [slice(0, 7), slice(7, 20), slice(20, rows)])
    found = fit.compute()
    quantiles = _normal_quantiles(rows)
    even, odd = slice(0, None, 2), slice(1, None, 2)
    crps, covered = torch.zeros((), dtype=torch.float64), torch.zeros((), dtype=torch.float64)
    for fitted, scored in ((even, odd), (odd, even)):
        factors = fit_factors(quantiles[fitted], actual[fitted], LEVELS)
        wide = Quantiles(LEVELS).widen(quantiles[scored], factors)
        known = torch.tensor(LEVELS, dtype=torch.float64)
        grid = intervals.at_levels(wide, known, intervals.crps_grid())
        crps += intervals.crps_from_grid(grid, actual[scored]).sum()
        covered += _inside(wide, actual[scored], 1, 3) * actual[scored].numel()
    assert found["crps_calibrated"].item() == pytest.approx(crps.item() / actual.numel(), 1e-12)
    assert found["coverage_80_calibrated"].item() == pytest.approx(covered.item() / actual.numel())
    # fitted on the even windows, the odd ones' intervals are far too narrow
    assert found["coverage_95_calibrated"].item() < 0.9
    torch.testing.assert_close(
        found["level_factors"], fit_factors(quantiles, actual.float().double(), LEVELS)
    )
    assert found["calibration_factor_80"] == found["level_factors"][3]
    assert found["calibration_factor_95"] == found["level_factors"][4]
    fit.reset()
    assert fit.windows_seen == 0 and fit.compute()["level_factors"].tolist() == [1.0] * 5


def test_an_actual_on_a_stretched_end_is_inside_it():
    """Quantiles -2..2 and actuals of ±2 in both folds: each fold's factor (2 for both pairs)
    puts the other fold's actuals exactly on the stretched 80 % ends (arithmetic exact in
    binary), where they count as covered. The fit's numbers are float64 whatever the batch's."""
    rows = 6
    quantiles = torch.tensor([-2.0, -1.0, 0.0, 1.0, 2.0]).expand(rows, 1, 1, 5)  # float32
    actual = torch.tensor([2.0, -2.0, 2.0, -2.0, -2.0, 2.0]).view(rows, 1, 1)
    fit = CoverageFit(Quantiles(LEVELS))
    scaling = TargetScaling(shift=torch.zeros(rows, 1), scale=torch.ones(rows, 1))  # float32
    fit.update(quantiles.clone(), scaling, actual)
    assert fit.quantiles[0].dtype == fit.actual[0].dtype == torch.float64
    found = fit.compute()
    assert found["level_factors"].tolist() == [2.0, 2.0, 1.0, 2.0, 2.0]
    assert found["level_factors"].dtype == found["crps_calibrated"].dtype == torch.float64
    assert found["coverage_80_calibrated"].item() == 1.0
    assert found["coverage_95_calibrated"].item() == 1.0


def test_a_ddp_sync_gathers_every_processs_windows_into_one_fit():
    """Under DDP torchmetrics replaces each list state by one tensor, every process's batches
    concatenated: two processes that saw the same windows then fit what one fit over both
    copies gives (their folds, each process's own parities, come along)."""
    rows = 10  # even: the second copy's windows keep their parities in the single fit
    actual = 1.3 * torch.randn(rows, 2, 1, generator=torch.Generator().manual_seed(5))
    synced = _filled(rows, actual.double(), [slice(0, 4), slice(4, rows)])
    for name in ("quantiles", "actual", "fold"):
        part = torch.cat(getattr(synced, name))
        setattr(synced, name, torch.cat([part, part]))  # as gathered from two processes
    both = _filled(2 * rows, torch.cat([actual, actual]).double(), [slice(0, rows)] * 2)
    for key, value in both.compute().items():
        torch.testing.assert_close(synced.compute()[key], value, msg=key)


def test_levels_equal_up_to_rounding_are_pairs_and_a_median():
    assert central_pairs((1e-12, 0.5, 1 - 1e-12)) == [(0, 2)]
    assert central_pairs((0.1, 0.5 + 7e-10, 0.9)) == [(0, 2)]


def test_the_parts_of_two_processes_merge_into_the_fit_over_all_windows():
    rows = 21
    actual = 1.3 * torch.randn(rows, 2, 1, generator=torch.Generator().manual_seed(3))
    whole = _filled(rows, actual.double(), [slice(0, rows)])
    first = _filled(rows, actual.double(), [slice(0, 20)])
    second = _filled(rows, actual.double(), [slice(20, 21)])
    first.merge_state(second)
    for key, value in whole.compute().items():
        torch.testing.assert_close(first.compute()[key], value, msg=key)


def test_one_window_cannot_be_cross_fitted():
    found = _filled(1, torch.ones(1, 2, 1, dtype=torch.float64), [slice(0, 1)]).compute()
    assert math.isnan(found["crps_calibrated"].item())
    assert found["crps_calibrated"].dtype == torch.float64
    assert CoverageFit(Quantiles(LEVELS)).compute()["level_factors"].dtype == torch.float64
    assert math.isfinite(found["calibration_factor_95"].item())


@pytest.mark.parametrize(
    ("distribution", "quantiles", "message"),
    [
        ("normal", None, r"calibration=coverage .* forecasts are normal; set model.quantiles"),
        (None, [0.1, 0.5, 0.8], r"model.quantiles=\[0.1, 0.5, 0.8\] are not the median and pairs"),
        (None, [0.1, 0.9], r"model.quantiles=\[0.1, 0.9\] are not the median and pairs"),
        (None, [0.1, 0.4, 0.9], r"model.quantiles=\[0.1, 0.4, 0.9\] are not the median and pairs"),
        (None, [0.5], r"model.quantiles=\[0.5\] are not the median and pairs about it; use levels"),
    ],
)
def test_a_forecast_without_central_intervals_is_refused_in_one_line(
    distribution, quantiles, message
):
    with pytest.raises(ConfigError, match=message) as refused:
        _model("coverage", distribution, quantiles)
    assert "\n" not in str(refused.value)
    fix = "model.quantiles" if distribution else "[0.025,0.1,0.5,0.9,0.975], or model.calibration"
    assert str(refused.value).endswith(f"{fix}=spread" if not distribution else "spread")
    assert fix in str(refused.value)


def test_the_median_and_one_pair_are_enough():
    assert central_pairs((0.1, 0.5, 0.9)) == [(0, 2)]
    assert _model("coverage", None, [0.1, 0.5, 0.9]).level_factors.tolist() == [1.0] * 3


def test_predictions_are_stretched_by_the_models_factors():
    model = _model("coverage", None, list(LEVELS))
    x = torch.randn(5, 6, 2, generator=torch.Generator().manual_seed(1))
    batch = Batch(
        x=x,
        lengths=torch.tensor([6, 6, 4, 5, 6]),
        scaling=TargetScaling(shift=torch.full((5, 1), 3.0), scale=torch.full((5, 1), 2.0)),
    )
    factors = torch.tensor([3.0, 2.0, 1.0, 2.0, 3.0])
    with torch.no_grad():
        plain = model.predict_step(batch, 0)
        model.level_factors.copy_(factors)
        wide = model.predict_step(batch, 0)
    torch.testing.assert_close(wide["prediction"], plain["prediction"])
    middle = plain["prediction"][..., None]
    torch.testing.assert_close(wide["quantiles"], middle + factors * (plain["quantiles"] - middle))
    assert "level_factors" in model.state_dict()
    assert "spread_factor" not in model.state_dict()


def test_a_calibrated_run_fits_on_validation_keeps_its_factors_and_tests_with_them(
    tmp_path_factory,
    sales_csv,  # noqa: F811 (the fixture)
):
    quantiles = "model.quantiles=[0.025,0.1,0.5,0.9,0.975]"
    plain_ckpt, plain = _train(tmp_path_factory, _overrides(sales_csv, quantiles))
    ckpt, metrics = _train(
        tmp_path_factory, _overrides(sales_csv, quantiles, "model.calibration=coverage")
    )
    # validation scores the forecasts as trained: the fit changes nothing it reads
    for key in ("val/crps", "val/coverage_80", "val/loss", "test/mae"):
        assert metrics[key] == pytest.approx(plain[key], rel=1e-6), key
    factors = load_checkpoint(ckpt)["state_dict"]["level_factors"]
    assert factors[2].item() == 1.0 and factors[0] >= factors[1] > 0
    assert metrics["val/calibration_factor_80"] == pytest.approx(factors[3].item(), rel=1e-6)
    for key in ("crps", "coverage_80", "coverage_95"):
        assert np.isfinite(metrics[f"val/{key}_calibrated"])
    # the test metrics are those of the stretched quantiles rnnlab.predict gives
    actual, wide, levels, _ = _test_outputs(ckpt)
    assert levels == list(LEVELS)
    inside = ((wide[..., 0] <= actual) & (actual <= wide[..., 4])).double().mean()
    assert metrics["test/coverage_95"] == pytest.approx(inside.item(), abs=1e-6)
    _, plain_quantiles, _, _ = _test_outputs(plain_ckpt)
    median = plain_quantiles[..., 2:3]
    torch.testing.assert_close(
        wide, median + factors.double() * (plain_quantiles - median), rtol=1e-5, atol=1e-4
    )
