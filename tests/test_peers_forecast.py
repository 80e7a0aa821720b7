"""``scripts/peers_forecast.py``'s own logic, without darts or neuralforecast: the windows it
gives the peers are ``experiment=forecast``'s and ``experiment=forecast_fertility``'s test
windows (one series; 192), its scores of a known sample set are the hand-computed numbers, its
table and its refusal when a peer's library is missing. The peers themselves run (on two short
synthetic series, with a budget of one epoch) only where their libraries are installed."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def peers_script() -> ModuleType:
    """Import ``scripts/peers_forecast.py`` (it imports ``docs_tables`` from its own folder)."""
    if str(ROOT / "scripts") not in sys.path:
        sys.path.insert(0, str(ROOT / "scripts"))
    return importlib.import_module("peers_forecast")


SCRIPT = peers_script()


def loader_targets(experiment: str) -> np.ndarray:
    """(windows, horizon): the targets of the experiment's test loader, batch after batch."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.utils import instantiate

    from rnnlab.utils.config import config_dir

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"experiment={experiment}"])
    GlobalHydra.instance().clear()
    data = instantiate(cfg.data)
    data.setup()
    return torch.cat([batch.y[..., 0] for batch in data.test_dataloader()]).double().numpy()


@pytest.fixture(scope="module")
def co2_windows():
    return SCRIPT.forecast_windows()


def test_the_windows_are_the_forecast_experiments_test_windows(co2_windows):
    targets = loader_targets("forecast")
    [windows] = co2_windows.series
    assert len(windows.origins) == 318 == len(targets) == co2_windows.windows
    # 2,284 weeks: 343 test, 343 val, the rest train; the first test origin is val_end
    assert (len(windows.values), windows.train_end, windows.val_end) == (2284, 1598, 1941)
    assert windows.origins.tolist() == list(range(1941, 2259))
    assert (windows.lookback, windows.horizon) == (104, 26)
    np.testing.assert_array_equal(windows.actuals(), targets)
    np.testing.assert_array_equal(co2_windows.actuals(), targets)
    assert not np.isnan(windows.values).any()  # forward-filled, as the DataModule's inputs
    assert (co2_windows.unit, co2_windows.step, co2_windows.per_series) == ("ppm", "weeks", False)
    # the notes under the CO2 table, as they were written before there were several series
    assert co2_windows.describe() == "318 test windows of co2 series (origins 1941–2258)"


def test_the_windows_of_every_series_are_the_fertility_experiments_test_windows():
    panel = SCRIPT.forecast_windows(experiment="forecast_fertility")
    targets = loader_targets("forecast_fertility")
    assert len(panel.series) == 192 and panel.windows == 768 == len(targets)
    # series after series in the DataModule's order, each cut 36 | 8 | 8 years
    np.testing.assert_array_equal(panel.actuals(), targets)
    assert [w.name for w in panel.series[:3]] == ["ABW", "AFG", "AGO"]
    for windows in panel.series:
        assert (len(windows.values), windows.train_end, windows.val_end) == (52, 36, 44)
        assert windows.origins.tolist() == [44, 45, 46, 47]
        assert (windows.lookback, windows.horizon) == (15, 5)
    # Aruba's first test window: 2004-2008 (births per woman, as shipped)
    np.testing.assert_allclose(
        panel.series[0].actuals()[0], [1.786, 1.769, 1.754, 1.739, 1.726], atol=1e-6
    )
    assert (panel.unit, panel.step, panel.per_series) == ("births per woman", "years", False)
    assert panel.describe() == (
        "768 test windows of fertility series (192 series, origins 44–47 of each)"
    )
    assert SCRIPT.forecast_windows(["data.per_series=true"], "forecast_fertility").per_series


def test_a_setting_the_peers_cannot_follow_is_refused():
    with pytest.raises(SCRIPT.PeersError, match=r"data\.stride=1"):
        SCRIPT.forecast_windows(["data.stride=2"])


def test_refusals_are_one_line_and_exit_status_2(monkeypatch, tmp_path, capsys):
    def refused(overrides=(), experiment="forecast"):
        raise SCRIPT.PeersError("the peers read one series")

    monkeypatch.setattr(SCRIPT, "missing_libraries", lambda keys: [])
    monkeypatch.setattr(SCRIPT, "forecast_windows", refused)
    assert SCRIPT.main(["--peers", "deepar"]) == 2
    assert capsys.readouterr().err == "error: the peers read one series\n"
    page = tmp_path / "results.md"
    page.write_text("# Results\n", encoding="utf-8")
    monkeypatch.setattr(SCRIPT, "RESULTS_PAGE", page)
    assert SCRIPT.main(["--write-docs"]) == 2
    said = "error: docs/results.md has no line <!-- BEGIN peers:forecast -->\n"
    assert capsys.readouterr().err == said
    # another experiment's block has its own markers
    page.write_text("<!-- BEGIN peers:forecast -->\n<!-- END peers:forecast -->\n")
    assert SCRIPT.main(["--write-docs", "--experiment", "forecast_fertility"]) == 2
    said = "error: docs/results.md has no line <!-- BEGIN peers:forecast_fertility -->\n"
    assert capsys.readouterr().err == said


def test_scores_of_a_known_sample_set():
    # five samples 0..4 (shuffled) at actual 1 and at actual 10; linear quantiles: q0.1 = 0.4,
    # q0.5 = 2, q0.9 = 3.6, q0.025 = 0.1, q0.975 = 3.9; fair CRPS = E|X - y| - 20 / (5 * 4)
    samples = np.array([[[3.0, 0.0, 4.0, 1.0, 2.0]], [[2.0, 4.0, 0.0, 3.0, 1.0]]])
    actual = np.array([[1.0], [10.0]])
    scores = SCRIPT.score(samples, actual)
    expected = {
        "crps": ((1.4 - 1.0) + (8.0 - 1.0)) / 2,
        # (0.1 * 0.6 + 0.5 * 1 + 0.1 * 2.6) / 3 and (0.1 * 9.6 + 0.5 * 8 + 0.9 * 6.4) / 3
        "pinball": ((0.06 + 0.5 + 0.26) / 3 + (0.96 + 4.0 + 5.76) / 3) / 2,
        "coverage_80": 0.5,
        "coverage_95": 0.5,
        "interval_width_80": 3.2,
        "mae": (1.0 + 8.0) / 2,
    }
    assert scores.keys() == expected.keys()
    for key, value in expected.items():
        assert scores[key] == pytest.approx(value, abs=1e-6), key


def test_scores_refuse_samples_that_do_not_fit_the_actuals():
    with pytest.raises(ValueError, match="do not fit"):
        SCRIPT.score(np.zeros((2, 3, 10)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="do not fit"):
        SCRIPT.score(np.zeros((2, 3, 1)), np.zeros((2, 3)))


def test_table_rows_give_mean_and_standard_deviation_over_seeds():
    runs = [
        {"crps": 0.5, "pinball": 0.2, "coverage_80": 0.8, "coverage_95": 0.9,
         "interval_width_80": 2.0, "mae": 0.6, "minutes": 1.0},
        {"crps": 0.7, "pinball": 0.4, "coverage_80": 0.6, "coverage_95": 0.96,
         "interval_width_80": 3.0, "mae": 0.8, "minutes": 3.0},
    ]  # fmt: skip
    lines = SCRIPT.table({"deepar": runs}, [201, 202])
    assert lines[2] == (
        "| neuralforecast `DeepAR` (Student-t) | 201, 202 | 0.600 ± 0.141 | 0.300 ± 0.141 "
        "| 0.700 ± 0.141 | 0.930 ± 0.042 | 2.50 ± 0.71 | 0.700 ± 0.141 | 2.0 |"
    )
    assert SCRIPT.seed_range([203, 201, 202]) == "201–203"
    assert SCRIPT.mean_std([0.25], 3) == "0.250"
    # the units and the changes read are the experiment's
    lines = SCRIPT.table({"darts_rnn": runs}, [201, 202], "births per woman", "yearly changes")
    assert lines[0].startswith("| peer | seeds | test CRPS (births per woman) | pinball |")
    assert lines[2].startswith("| darts `RNNModel` (LSTM, Gaussian), yearly changes | 201, 202 |")
    assert SCRIPT.table({"darts_rnn": runs}, [201])[2].startswith(
        "| darts `RNNModel` (LSTM, Gaussian), weekly changes | 201 |"
    )


@pytest.mark.skipif(
    importlib.util.find_spec("darts") is not None, reason="darts is installed in this Python"
)
def test_a_missing_peer_library_is_one_line_and_exit_status_2(capsys):
    assert SCRIPT.main(["--peers", "darts_rnn", "--seeds", "201"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: darts not installed")


def synthetic_panel(per_series: bool = False, lengths: tuple[int, int] = (300, 300)) -> Any:
    """Two seasonal series with a trend, the second 50 higher: each split train | val (50
    steps) | test (50 steps: 46 windows of 5 steps after 20)."""
    series = []
    for number, n in enumerate(lengths):
        steps = np.arange(n)
        values = 50.0 * number + 0.05 * steps + np.sin(2 * np.pi * steps / 12)
        origins = np.arange(n - 50, n - 4)
        series.append(SCRIPT.Windows(values, n - 100, n - 50, 20, 5, origins, f"s{number}"))
    return SCRIPT.Panel(tuple(series), per_series, "synthetic", "units", "steps")


def test_deepar_refuses_series_whose_parts_differ_in_length():
    panel = synthetic_panel()
    first, second = panel.series
    # the second's test part a step shorter (its val part a step longer)
    shorter = replace(second, val_end=second.val_end + 1, origins=second.origins[1:])
    with pytest.raises(SCRIPT.PeersError, match="val and test parts of one length"):
        SCRIPT.deepar(replace(panel, series=(first, shorter)), 201)


@pytest.mark.slow
@pytest.mark.parametrize("per_series", [False, True], ids=["global_zscore", "per_series"])
@pytest.mark.parametrize("peer", sorted(SCRIPT.PEERS))
def test_each_peer_forecasts_every_window_of_every_series_from_its_origin(
    peer, per_series, monkeypatch
):
    pytest.importorskip(SCRIPT.PEERS[peer].library.replace("-", "_"))
    monkeypatch.setattr(SCRIPT, "DARTS_EPOCHS", 1)
    monkeypatch.setattr(SCRIPT, "DEEPAR_STEPS", 2)
    monkeypatch.setattr(SCRIPT, "DEEPAR_CHECK", 1)
    monkeypatch.setattr(SCRIPT, "SAMPLES", 20)
    panel = synthetic_panel(per_series)
    samples = SCRIPT.PEERS[peer].run(panel, 201)
    assert samples.shape == (92, 5, 20) and np.isfinite(samples).all()
    # each series' windows in its own range: the second's 50 above the first's
    medians = np.median(samples, axis=-1).mean(axis=1)
    assert (medians[46:] - medians[:46] > 25).all()
    scores = SCRIPT.score(samples, panel.actuals())
    assert 0 <= scores["coverage_80"] <= scores["coverage_95"] <= 1
    # the same seed draws the same samples
    np.testing.assert_array_equal(SCRIPT.PEERS[peer].run(panel, 201), samples)


def test_the_results_page_holds_the_block_the_script_writes():
    text = SCRIPT.RESULTS_PAGE.read_text(encoding="utf-8")
    block = SCRIPT.read_block(text, SCRIPT.MARKER, "docs/results.md")
    if block.strip():  # written: the script's own header and its 318 windows
        assert block.splitlines()[0] == SCRIPT.table({}, [])[0]
        assert "318 test windows" in block
    block = SCRIPT.read_block(text, "peers:forecast_fertility", "docs/results.md")
    if block.strip():
        header = SCRIPT.table({}, [], "births per woman", "yearly changes")[0]
        assert block.splitlines()[0] == header
        assert "768 test windows of fertility series (192 series" in block
