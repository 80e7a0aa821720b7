"""The shared figure style and the figures drawn from it (no training: hand-made inputs)."""

from __future__ import annotations

import subprocess
import sys

import matplotlib as mpl
import pandas as pd
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from matplotlib.colors import to_hex
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

from rnnlab import plotting
from rnnlab.callbacks.figures import confusion_figure, forecast_figure
from rnnlab.capabilities import name_of
from rnnlab.models.encoder import RNNEncoder
from rnnlab.summary import sweep_figure
from rnnlab.utils.hparams import log_hparams
from tests.conftest import compose_config


def test_importing_the_style_does_not_import_matplotlib():
    code = "import sys, rnnlab.plotting; print('matplotlib' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr


def test_style_applies_inside_the_block_only():
    before = dict(mpl.rcParams)
    with plotting.styled():
        assert mpl.rcParams["axes.spines.top"] is False
        cycle = [c["color"] for c in mpl.rcParams["axes.prop_cycle"]]
        assert cycle == plotting.CYCLE
    assert dict(mpl.rcParams) == before


def test_confusion_figure_names_the_run_and_labels_its_axes():
    matrix = torch.tensor([[5, 1], [0, 4]])
    fig = confusion_figure(matrix, ["a", "b"], "toy, BiLSTM, 8 units")
    ax = fig.axes[0]
    assert ax.get_title() == "Test confusion matrix — toy, BiLSTM, 8 units"
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("predicted class", "true class")
    assert [t.get_text() for t in ax.texts] == ["5", "1", "0", "4"]
    # the colour scale runs from white to the palette's blue, labelled (second axes: colour bar)
    cmap = ax.images[0].get_cmap()
    assert to_hex(cmap(1.0)).upper() == plotting.OKABE_ITO["blue"]
    assert "share of the true class" in fig.axes[1].get_ylabel()


def test_forecast_figure_gives_each_role_its_colour_and_units():
    window = {
        "history": torch.arange(6.0),
        "actual": torch.arange(6.0, 9.0),
        "forecast": torch.arange(6.0, 9.0) + 0.5,
        "seasonal naive": torch.arange(3.0, 6.0),
    }
    fig = forecast_figure([window, window], "co2", "co2 series, LSTM, 8 units", "ppm", "weeks")
    assert fig.get_suptitle() == "Test forecasts — co2 series, LSTM, 8 units"
    for ax in fig.axes:
        assert ax.get_ylabel() == "co2 (ppm)"
        colors = {line.get_label(): to_hex(line.get_color()).upper() for line in ax.get_lines()}
        for role in ("history", "actual", "forecast", "seasonal naive"):
            assert colors[role] == plotting.ROLE_COLORS[role]
    assert fig.axes[-1].get_xlabel() == "weeks from the forecast origin"
    plain = forecast_figure([window], "value")
    assert plain.axes[0].get_ylabel() == "value"
    assert plain.axes[0].get_xlabel() == "steps from the forecast origin"


def test_encoder_descriptions():
    assert name_of(RNNEncoder(3, hidden_size=8)) == "BiLSTM, 8 units"
    gru = RNNEncoder(3, hidden_size=4, cell="gru", num_layers=2, bidirectional=False)
    assert name_of(gru) == "2-layer GRU, 4 units"
    assert name_of(torch.nn.Linear(2, 2)) == "Linear"


def test_sweep_figure_marks_the_best_job_and_names_failures():
    table = pd.DataFrame(
        {
            "job": [0, 1, 2],
            "best": ["", "*", ""],
            "model.encoder.hidden_size": ["16", "64", "128"],
            "status": ["completed", "completed", "failed: out of memory"],
            "val/loss_best": [0.30, 0.20, float("nan")],
        }
    )
    table.attrs.update(
        objective="val/loss_best", mode="min", varying=["model.encoder.hidden_size"], name="s1"
    )
    fig = sweep_figure(table, unit="cross-entropy, nats")
    ax = fig.axes[0]
    assert ax.get_title() == "Sweep objective per configuration — s1"
    assert ax.get_xlabel() == "val/loss_best (lower is better) (cross-entropy, nats)"
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == [f"model.encoder.hidden_size={h}" for h in (16, 64, 128)]
    bars = [to_hex(p.get_facecolor()).upper() for p in ax.patches]
    assert bars == [plotting.ROLE_COLORS[r] for r in ("other", "best", "other")]
    assert [t.get_text().strip() for t in ax.texts] == ["0.3000", "0.2000", "failed: out of memory"]


def test_hparams_put_the_chosen_settings_and_the_objective_first(tmp_path):
    cfg = compose_config("train", ["model.encoder.hidden_size=8"], tmp_path)
    logger = TensorBoardLogger(str(tmp_path), name="tb", version="")
    metrics = {"test/f1": 0.5, "test/acc": 0.6, "val/loss_best": 0.7, "train/loss": 1.0}
    log_hparams([logger], cfg, metrics, chosen={"model.encoder.hidden_size", "seed"})
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    content = events.PluginTagToContent("hparams")["_hparams_/experiment"]
    experiment = HParamsPluginData.FromString(content).experiment
    differs = {info.name for info in experiment.hparam_infos if info.differs}
    assert differs == {"model.encoder.hidden_size", "seed"}
    assert [m.name.tag for m in experiment.metric_infos] == ["val/loss_best", "test/acc", "test/f1"]


@pytest.mark.parametrize("chosen", [set(), {"no.such.key"}])
def test_hparams_without_chosen_settings_flag_none(tmp_path, chosen):
    cfg = compose_config("train", [], tmp_path)
    logger = TensorBoardLogger(str(tmp_path), name="tb", version="")
    log_hparams([logger], cfg, {"val/loss_best": 0.7}, chosen=chosen)
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    content = events.PluginTagToContent("hparams")["_hparams_/experiment"]
    experiment = HParamsPluginData.FromString(content).experiment
    assert not any(info.differs for info in experiment.hparam_infos)
