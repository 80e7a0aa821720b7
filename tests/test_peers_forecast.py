"""``scripts/peers_forecast.py``'s own logic, without darts or neuralforecast: the windows it
gives the peers are ``experiment=forecast``'s test windows, its scores of a known sample set are
the hand-computed numbers, its table and its refusal when a peer's library is missing. The peers
themselves run (on a short synthetic series, with a budget of one epoch) only where their
libraries are installed."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

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


@pytest.fixture(scope="module")
def co2_windows():
    return SCRIPT.forecast_windows()


def test_the_windows_are_the_forecast_experiments_test_windows(co2_windows):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.utils import instantiate

    from rnnlab.utils.config import config_dir

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["experiment=forecast"])
    GlobalHydra.instance().clear()
    data = instantiate(cfg.data)
    data.setup()
    targets = torch.cat([batch.y[..., 0] for batch in data.test_dataloader()]).double().numpy()
    windows = co2_windows
    assert len(windows.origins) == 318 == len(targets)
    # 2,284 weeks: 343 test, 343 val, the rest train; the first test origin is val_end
    assert (len(windows.values), windows.train_end, windows.val_end) == (2284, 1598, 1941)
    assert windows.origins.tolist() == list(range(1941, 2259))
    assert (windows.lookback, windows.horizon) == (104, 26)
    np.testing.assert_array_equal(windows.actuals(), targets)
    assert not np.isnan(windows.values).any()  # forward-filled, as the DataModule's inputs


def test_a_setting_the_peers_cannot_follow_is_refused():
    with pytest.raises(SCRIPT.PeersError, match=r"data\.stride=1"):
        SCRIPT.forecast_windows(["data.stride=2"])


def test_refusals_are_one_line_and_exit_status_2(monkeypatch, tmp_path, capsys):
    def refused(overrides=()):
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


@pytest.mark.skipif(
    importlib.util.find_spec("darts") is not None, reason="darts is installed in this Python"
)
def test_a_missing_peer_library_is_one_line_and_exit_status_2(capsys):
    assert SCRIPT.main(["--peers", "darts_rnn", "--seeds", "201"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: darts not installed")


def synthetic_windows() -> object:
    """A seasonal series with a trend: train 0-199, val 200-249, test 250-299 (26 windows)."""
    steps = np.arange(300)
    values = 0.05 * steps + np.sin(2 * np.pi * steps / 12)
    return SCRIPT.Windows(values, 200, 250, 20, 5, np.arange(250, 296), "synthetic")


@pytest.mark.slow
@pytest.mark.parametrize("peer", sorted(SCRIPT.PEERS))
def test_each_peer_forecasts_every_window_from_its_origin(peer, monkeypatch):
    pytest.importorskip(SCRIPT.PEERS[peer].library.replace("-", "_"))
    monkeypatch.setattr(SCRIPT, "DARTS_EPOCHS", 1)
    monkeypatch.setattr(SCRIPT, "DEEPAR_STEPS", 2)
    monkeypatch.setattr(SCRIPT, "DEEPAR_CHECK", 1)
    monkeypatch.setattr(SCRIPT, "SAMPLES", 20)
    windows = synthetic_windows()
    samples = SCRIPT.PEERS[peer].run(windows, 201)
    assert samples.shape == (46, 5, 20) and np.isfinite(samples).all()
    scores = SCRIPT.score(samples, windows.actuals())
    assert 0 <= scores["coverage_80"] <= scores["coverage_95"] <= 1
    # the same seed draws the same samples
    np.testing.assert_array_equal(SCRIPT.PEERS[peer].run(windows, 201), samples)


def test_the_results_page_holds_the_block_the_script_writes():
    text = SCRIPT.RESULTS_PAGE.read_text(encoding="utf-8")
    block = SCRIPT.read_block(text, SCRIPT.MARKER, "docs/results.md")
    if block.strip():  # written: the script's own header and its 318 windows
        assert block.splitlines()[0] == SCRIPT.table({}, [])[0]
        assert "318 test windows" in block
