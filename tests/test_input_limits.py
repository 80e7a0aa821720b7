"""Input files: only regular files within data.max_file_mb are read, and only that far; text is
checked for NUL throughout and read in UTF-16/32 when asked; forecast values float32 cannot
carry, constant targets (MASE), mixed UTC offsets and column names that look like
interpolations each end in one clear line or a defined result."""

from __future__ import annotations

import json
import logging
import math
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from rnnlab.checkpoint import CONFIG_KEY, load_checkpoint, restore
from rnnlab.data.corpus import Vocabulary, read_text
from rnnlab.data.forecast import ForecastDataModule
from rnnlab.data.inputs import read_input
from rnnlab.data.ngram import best_order
from rnnlab.data.regression import RegressionDataModule
from rnnlab.data.text import TextDataModule
from rnnlab.data.windows import mase_scale
from rnnlab.models.metrics import MeanAbsoluteScaledError
from rnnlab.train import train
from rnnlab.utils.errors import ConfigError, DataError
from tests.conftest import TS_HEADER, compose_config
from tests.test_cli import _run

PROSE = "It was the best of times, it was the worst of times, it was the age of wisdom. " * 40
LM_FAST = [
    "experiment=charlm",
    "trainer.max_epochs=1",
    "model.encoder.hidden_size=8",
    "model.embedding_size=8",
    "data.batch_size=4",
    "data.bptt=16",
    "data.ngram_max_order=3",
    "callbacks.learning_rate_monitor=null",
    "trainer.enable_progress_bar=false",
]


def _one_line(exc: BaseException) -> str:
    message = str(exc)
    assert len(message.splitlines()) == 1, message
    return message


# --- Finding 2: regular files within a limit, read with a bound ----------------------------------


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/dev/zero", "is not a regular file (a device, pipe or socket)"),
        ("/", "is a directory; give a file"),
    ],
)
def test_devices_and_directories_are_refused_before_reading(path, message):
    if not Path(path).exists():
        pytest.skip(f"{path} is not on this system")
    with pytest.raises(DataError, match=re.escape(message)) as caught:
        read_input(path, "data.file", 1024)
    assert _one_line(caught.value).startswith(f"data.file={path} ")


def test_a_missing_file_names_the_setting_to_check():
    with pytest.raises(DataError) as caught:
        read_input("/nonexistent/file.txt", "input", 1024)
    assert _one_line(caught.value) == "data file /nonexistent/file.txt does not exist; check input"


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(DataError, match="is not a regular file"):
        read_input(fifo, "data.file", 1024)


def test_a_file_over_the_limit_is_refused_naming_the_setting(tmp_path):
    big = tmp_path / "big.txt"
    big.write_bytes(b"a" * 300_000)
    with pytest.raises(DataError) as caught:
        read_input(big, "data.file", 0.25)
    assert _one_line(caught.value) == (
        f"data.file={big} is 0.3 MiB, over data.max_file_mb=0.25 MiB; raise data.max_file_mb "
        "if this machine's memory holds it (several times the file's size)"
    )
    assert read_input(big, "data.file", 0.3) == b"a" * 300_000


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux /proc")
def test_a_file_that_reports_a_smaller_size_is_read_only_up_to_the_limit():
    # /proc files are regular and report size 0, whatever they hold
    assert os.stat("/proc/self/maps").st_size == 0
    with pytest.raises(DataError, match=r"holds more than data\.max_file_mb=0\.0001 MiB"):
        read_input("/proc/self/maps", "data.file", 0.0001)


@pytest.mark.parametrize("value", [0, -1, "x", True, float("inf"), float("nan")])
def test_the_limit_must_be_a_positive_number(value):
    with pytest.raises(ConfigError, match=r"data\.max_file_mb="):
        TextDataModule(max_file_mb=value)


def test_every_loader_of_user_files_reads_through_the_limit(tmp_path):
    text = tmp_path / "corpus.txt"
    text.write_text(PROSE)
    with pytest.raises(DataError, match=r"data\.file=.* over data\.max_file_mb"):
        TextDataModule(file=str(text), batch_size=4, bptt=16, max_file_mb=0.001).setup()
    table = tmp_path / "series.csv"
    table.write_text("time,value\n" + "".join(f"{i},{i}\n" for i in range(500)))
    with pytest.raises(DataError, match=r"data\.file=.* over data\.max_file_mb"):
        ForecastDataModule(file=str(table), time_column="time", max_file_mb=0.001).setup()
    ts = tmp_path / "train.ts"
    regression_header = TS_HEADER.replace("@classLabel true a b", "@targetLabel true")
    ts.write_text(regression_header + "1,2:0.5\n" * 300)
    data = RegressionDataModule(train_file=str(ts), test_file=str(ts), max_file_mb=0.001)
    with pytest.raises(DataError, match=r"data\.train_file=.* over data\.max_file_mb"):
        data.setup()
    with pytest.raises(DataError, match="is not a regular file"):
        ForecastDataModule(file="/dev/zero", time_column="time").setup()
    with pytest.raises(DataError, match="is not a regular file"):
        RegressionDataModule(train_file="/dev/zero", test_file="/dev/zero").setup()


@pytest.fixture(scope="module")
def lm_checkpoint(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lm")
    corpus = root / "corpus.txt"
    corpus.write_text(PROSE)
    train(compose_config("train", [*LM_FAST, f"data.file={corpus}"], root / "run"))
    return root / "run" / "checkpoints" / "best.ckpt"


def test_a_checkpoint_naming_dev_zero_as_its_text_is_refused(lm_checkpoint, tmp_path):
    checkpoint = load_checkpoint(lm_checkpoint)
    checkpoint[CONFIG_KEY]["data"]["file"] = "/dev/zero"
    crafted = tmp_path / "crafted.ckpt"
    torch.save(checkpoint, crafted)
    _, data, _ = restore(load_checkpoint(crafted), crafted)
    with pytest.raises(DataError, match=r"data\.file=/dev/zero is not a regular file"):
        data.setup()


def test_charlm_on_dev_zero_exits_2_in_one_line(tmp_path):
    result = _run(
        ["-m", "rnnlab.train", *LM_FAST, "data.file=/dev/zero", f"hydra.run.dir={tmp_path / 'r'}"],
        tmp_path,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines() == [
        "error: data.file=/dev/zero is not a regular file (a device, pipe or socket); give a "
        "file on disk"
    ]
    assert not (tmp_path / "r").exists()


def test_eval_scoring_dev_zero_is_refused(lm_checkpoint, tmp_path):
    _, data, _ = restore(load_checkpoint(lm_checkpoint), lm_checkpoint)
    data.use_test_file("/dev/zero")
    with pytest.raises(DataError, match="is not a regular file"):
        data.setup()


# --- Finding 7: text ---------------------------------------------------------------------------


def test_a_nul_after_the_first_mebibyte_is_refused(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_bytes(b"abc " * (1 << 19) + b"\x00" + b"abc " * 10)
    with pytest.raises(DataError) as caught:
        read_text(path, "utf-8")
    assert f"looks binary (a NUL byte at offset {1 << 21})" in _one_line(caught.value)


def test_the_unknown_stand_in_is_never_a_character_of_the_text():
    vocab = Vocabulary(list("ab\x00\ue000"))  # even a vocabulary holding NUL and U+E000
    assert vocab.unknown not in vocab.ids
    known = vocab.known("ab\x00zq")
    assert known == "ab\x00" + vocab.unknown * 2
    # an unseen character in val scores as the stand-in; the n-gram stays a probability
    train = "ab\x00" * 50
    model, nll = best_order(train, vocab.known("ab\x00zab"), len(vocab), [2, 3])
    assert math.isfinite(nll)
    assert np.isfinite(model.nll(vocab.known("zzab\x00"))).all()


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32", "utf-32-be"])
def test_utf16_and_utf32_text_is_read_when_its_encoding_is_given(tmp_path, encoding):
    path = tmp_path / "corpus.txt"
    path.write_bytes(("caf\u00e9 " + PROSE).encode(encoding))
    assert read_text(path, encoding) == "caf\u00e9 " + PROSE
    data = TextDataModule(file=str(path), encoding=encoding, batch_size=4, bptt=16)
    data.setup()
    assert "\u00e9" in data.vocab.chars


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32"])
def test_utf16_text_read_as_utf8_names_the_encoding_to_set(tmp_path, encoding):
    path = tmp_path / "corpus.txt"
    path.write_bytes(PROSE.encode(encoding))  # starts with a byte-order mark
    with pytest.raises(DataError) as caught:
        read_text(path, "utf-8")
    assert _one_line(caught.value).endswith(
        f"it looks like {encoding} text (it starts with a byte-order mark): set "
        f"data.encoding={encoding}"
    )


def test_a_nul_character_in_utf16_text_is_refused(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_bytes(("abc" * 10 + "\x00" + "abc").encode("utf-16"))
    with pytest.raises(DataError, match=r"looks binary \(a NUL character at character 30"):
        read_text(path, "utf-16")


@pytest.mark.parametrize("encoding", ["base64", "zlib_codec"])
def test_an_encoding_that_is_not_a_text_encoding_is_refused(tmp_path, encoding):
    path = tmp_path / "corpus.txt"
    path.write_text(PROSE)
    with pytest.raises(ConfigError, match=f"data.encoding='{encoding}' is not a text encoding"):
        read_text(path, encoding)


def test_a_scored_text_that_does_not_decode_gets_advice_eval_accepts(lm_checkpoint, tmp_path):
    new = tmp_path / "new.txt"
    new.write_bytes("it was the age of caf\u00e9".encode("latin-1"))
    _, data, _ = restore(load_checkpoint(lm_checkpoint), lm_checkpoint)
    data.use_test_file(str(new))
    with pytest.raises(DataError) as caught:
        data.setup()
    message = _one_line(caught.value)
    assert "data.encoding" not in message  # rnnlab.eval takes no data.encoding
    assert message.endswith(
        "this model reads texts as utf-8, as its training text was: convert the file to utf-8 "
        "(e.g. iconv -f latin-1 -t utf-8)"
    )
    # where the caller lets the user choose the encoding, the setting is named again
    data.use_test_file(str(new), encoding="latin-1")
    data.setup()
    assert data.parts["test"].size == len("it was the age of caf\u00e9")


# --- Finding 3 (data): values float32 cannot carry, a constant target's MASE -------------------


def _forecast_csv(tmp_path: Path, values, name: str = "s.csv", times=None) -> str:
    n = len(values)
    frame = pd.DataFrame({"time": times if times is not None else range(n), "value": values})
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return str(path)


def _forecast(path: str, **settings) -> ForecastDataModule:
    options = {"time_column": "time", "lookback": 8, "horizon": 2, "season_length": 1}
    return ForecastDataModule(file=path, **{**options, **settings})


@pytest.mark.parametrize("tiny", [1e-300, -3e-39, 1e-45])
def test_values_too_small_for_float32_are_refused_naming_file_column_and_line(tmp_path, tiny):
    values = np.sin(np.arange(60.0))
    values[5] = tiny
    path = _forecast_csv(tmp_path, values)
    with pytest.raises(DataError) as caught:
        _forecast(path).setup()
    assert _one_line(caught.value).startswith(
        f"{path} line 7: column 'value' holds {tiny:g}, too small for float32 training"
    )


def test_zero_and_the_smallest_normal_float32_are_accepted(tmp_path):
    values = np.sin(np.arange(60.0))
    values[3], values[4] = 0.0, float(np.finfo(np.float32).tiny)
    _forecast(_forecast_csv(tmp_path, values)).setup()


def test_ts_values_and_targets_too_small_for_float32_are_refused(tmp_path):
    header = TS_HEADER.replace("@classLabel true a b", "@targetLabel true")
    ts = tmp_path / "train.ts"
    ts.write_text(header + "1,2:0.5\n" * 5 + "1e-300,2:0.5\n" + "1,2:0.5\n" * 5)
    with pytest.raises(DataError, match=r"sample 5 has value 1e-300 at time step 0, channel 0, "):
        RegressionDataModule(train_file=str(ts), test_file=str(ts)).setup()
    ts.write_text(header + "1,2:0.5\n" * 5 + "1,2:1e-300\n" + "1,2:0.5\n" * 5)
    with pytest.raises(DataError, match=r"sample 5 has target 1e-300, too small"):
        RegressionDataModule(train_file=str(ts), test_file=str(ts)).setup()


def test_mase_of_a_constant_target_is_undefined_not_divided_by_zero(tmp_path, caplog):
    assert torch.isnan(mase_scale(torch.ones(20, 1), 1)).all()
    assert torch.isnan(mase_scale(torch.ones(1, 1), 1)).all()  # no seasonal difference at all
    metric = MeanAbsoluteScaledError()
    metric.update(torch.ones(2, 3), torch.zeros(2, 3), torch.full((2, 3), float("nan")))
    assert torch.isnan(metric.compute())  # no series with a defined scale: NaN, never 0 or inf
    # a series with a scale counts; the constant one is left out, not given a stand-in scale
    metric.update(torch.ones(1, 3), torch.zeros(1, 3), torch.full((1, 3), 2.0))
    assert metric.compute().item() == pytest.approx(0.5)
    caplog.set_level(logging.WARNING, logger="rnnlab.data.windows")
    data = _forecast(_forecast_csv(tmp_path, np.full(60, 5.0)))
    data.setup()
    assert any("MASE" in m and "undefined" in m for m in caplog.messages)


def test_a_constant_target_trains_and_reports_mase_as_nan(tmp_path):
    path = _forecast_csv(tmp_path, np.full(60, 5.0))
    overrides = [
        "experiment=forecast_csv",
        f"data.file={path}",
        "data.time_column=time",
        "data.target_columns=[value]",
        "data.lookback=8",
        "data.horizon=2",
        "data.season_length=1",
        "trainer.max_epochs=1",
        "model.encoder.hidden_size=8",
        "callbacks.learning_rate_monitor=null",
        "trainer.enable_progress_bar=false",
    ]
    metrics = train(compose_config("train", overrides, tmp_path / "run"))
    assert math.isnan(metrics["test/mase"]) and math.isfinite(metrics["test/mae"])
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert math.isnan(saved["test/mase"])


# --- Finding 8: time zones, names that look like interpolations ---------------------------------


def test_mixed_utc_offsets_end_in_one_line_naming_the_row(tmp_path):
    times = [f"2021-03-27T{h:02d}:00:00+01:00" for h in range(24)]
    times += [f"2021-03-28T{h:02d}:00:00+02:00" for h in range(24)]
    path = _forecast_csv(tmp_path, np.sin(np.arange(48.0)), times=times)
    with pytest.raises(DataError) as caught:
        _forecast(path).setup()
    assert _one_line(caught.value) == (
        f"{path} line 26: time '2021-03-28T00:00:00+02:00' has UTC offset +02:00, line 2 has "
        "+01:00; a time column must use one offset throughout: write every time in one (e.g. "
        "UTC) in column 'time'"
    )


def test_one_utc_offset_throughout_is_read_as_written(tmp_path):
    times = [f"2021-03-{1 + h // 24:02d}T{h % 24:02d}:00:00-05:30" for h in range(60)]
    data = _forecast(_forecast_csv(tmp_path, np.sin(np.arange(60.0)), times=times))
    data.setup()
    assert str(data.series[0].raw.shape) == "torch.Size([60, 1])"


def test_a_column_named_like_an_interpolation_is_selected_and_written_back(tmp_path):
    n = 60
    frame = pd.DataFrame({"${time}": range(n), "${oc.env:HOME}": np.sin(np.arange(n) / 3)})
    path = tmp_path / "s.csv"
    frame.to_csv(path, index=False)
    data = ForecastDataModule(
        file=str(path),
        time_column="$\\{time}",
        target_columns=["$\\{oc.env:HOME}"],
        lookback=8,
        horizon=2,
        season_length=1,
    )
    data.setup()
    data.setup_predict(str(path))
    outputs = [{"prediction": torch.zeros(1, 2, 1)}]
    predictions = data.prediction_frame(outputs)
    assert list(predictions.columns) == ["step", "${time}", "${oc.env:HOME}"]
    # a name that is not in the file lists the columns as settings name them
    with pytest.raises(DataError, match=re.escape("(columns: ['$\\\\{time}', '$\\\\{oc.env")):
        ForecastDataModule(file=str(path), time_column="time", lookback=8, horizon=2).setup()


def test_a_row_without_a_series_id_is_refused_in_one_line(tmp_path):
    from rnnlab.data.series import read_csv as read_series_csv
    from rnnlab.data.series import split_series
    from rnnlab.utils.errors import DataError

    path = tmp_path / "shops.csv"
    path.write_text("date,shop,sales\n2024-01-01,a,1\n2024-01-01,,2\n2024-01-02,a,3\n")
    table = read_series_csv(str(path), "data.file", 1024)
    with pytest.raises(DataError, match=r"shops\.csv has no series id at line 3 \(column 'shop'\)"):
        split_series(table, "date", ["sales"], "shop", True)


def test_more_evaluation_streams_than_characters_allocate_no_empty_rows(tmp_path):
    from rnnlab.data.text import TextDataModule

    path = tmp_path / "tiny.txt"
    path.write_text("abcabcabcabc" * 20)
    huge = TextDataModule(
        file=str(path), eval_streams=10**9, bptt=8, batch_size=2, ngram_max_order=0
    )
    huge.setup()
    batch = next(iter(huge.val_dataloader()))
    assert batch.x.shape[0] <= len(huge.ids["val"])  # rows bounded by the characters
