"""Before a data file is read, the memory it will take against what this process can get: the
machine's available memory and its cgroup's room, refused in one line naming what to change."""

from __future__ import annotations

import pytest

from rnnlab.data import memory
from rnnlab.data.forecast import ForecastDataModule
from rnnlab.data.memory import available_memory, check_fits, text_need
from rnnlab.data.text import TextDataModule
from rnnlab.data.ucr import load_ts_file
from rnnlab.utils.errors import DataError
from tests.conftest import write_ts

GIB = 1 << 30


def _files(tmp_path, meminfo: str, **cgroup: str):
    (tmp_path / "meminfo").write_text(meminfo)
    root = tmp_path / "cg"
    for name, text in cgroup.items():
        path = root / name.replace("__", "/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path / "meminfo", root


def test_the_room_is_the_least_of_available_memory_and_the_cgroup_limit(tmp_path):
    meminfo = "MemTotal: 100 kB\nMemAvailable: 8388608 kB\n"  # 8 GiB
    assert available_memory(*_files(tmp_path, meminfo)) == (8 * GIB, "available on this machine")
    files = _files(tmp_path, meminfo, **{"memory.max": str(3 * GIB), "memory.current": str(GIB)})
    assert available_memory(*files) == (2 * GIB, "left under this process's cgroup memory limit")
    files = _files(tmp_path, meminfo, **{"memory.max": "max", "memory.current": "5"})
    assert available_memory(*files)[0] == 8 * GIB
    (tmp_path / "cg" / "memory.max").unlink()
    v1 = {"memory__memory.limit_in_bytes": str(GIB), "memory__memory.usage_in_bytes": "0"}
    assert available_memory(*_files(tmp_path, meminfo, **v1))[0] == GIB
    v1["memory__memory.limit_in_bytes"] = str(2**63 - 4096)  # v1's "no limit"
    assert available_memory(*_files(tmp_path, meminfo, **v1))[0] == 8 * GIB
    assert available_memory(tmp_path / "absent", tmp_path / "absent") is None


def test_a_data_set_over_the_room_is_refused_in_one_line():
    check_fits("x", 10 * GIB, "do y", room=(20 * GIB, "available"))  # fits: nothing happens
    with pytest.raises(DataError) as caught:
        check_fits("data.file=big.csv (900 MiB)", 5 * GIB, "do y", room=(2 * GIB, "available"))
    assert str(caught.value) == (
        "data.file=big.csv (900 MiB) needs about 5.0 GiB of memory to load, more than the 2.0 GiB "
        "available; do y"
    )


def _room(monkeypatch, nbytes: int) -> None:
    monkeypatch.setattr(memory, "available_memory", lambda: (nbytes, "available on this machine"))


def test_a_text_that_fits_only_without_the_ngram_baseline_names_its_settings(tmp_path, monkeypatch):
    path = tmp_path / "corpus.txt"
    path.write_text("abc " * 300_000)  # 1.2 MB
    size = path.stat().st_size
    assert text_need(size, 0.1, 0, 10**7) < text_need(size, 0.1, 7, 10**7)
    _room(monkeypatch, text_need(size, 0.1, 0, 10**7) + 1)
    with pytest.raises(DataError, match=r"set data.ngram_max_order=0 .* data.ngram_fit_chars"):
        TextDataModule(file=str(path), batch_size=4, bptt=16).setup()
    TextDataModule(file=str(path), batch_size=4, bptt=16, ngram_max_order=0).setup()
    _room(monkeypatch, 1000)
    with pytest.raises(DataError, match=r"give a shorter data\.file"):
        TextDataModule(file=str(path), batch_size=4, bptt=16, ngram_max_order=0).setup()


def test_tables_and_ts_files_over_the_room_are_refused_before_they_are_read(tmp_path, monkeypatch):
    csv = tmp_path / "series.csv"
    csv.write_text("time,value\n" + "".join(f"{t},{t % 7}\n" for t in range(200)))
    ts = write_ts(tmp_path / "d.ts", ["1,2,3:a", "4,5:b"])
    _room(monkeypatch, 100)
    with pytest.raises(DataError, match=r"data.file=.*series.csv .* give a smaller data.file"):
        ForecastDataModule(file=str(csv), lookback=5, horizon=2).setup("fit")
    with pytest.raises(DataError, match=r"data.train_file=.*d.ts .* give a smaller"):
        load_ts_file(ts)


def test_this_machine_has_room_for_the_shipped_data():
    room = available_memory()
    assert room is None or room[0] > 0
