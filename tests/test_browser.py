"""TensorBoard as a person sees it: our logs served by ``tensorboard``, opened in headless
Chromium (``scripts/tensorboard_check.py``). The browser tests are slow and need the OS's
Chromium and the playwright package; the server's clean-up is tested without a browser."""

from __future__ import annotations

import contextlib
import importlib
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from torch.utils.tensorboard import SummaryWriter

from tests.test_cli import _run

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _check_module() -> ModuleType:
    if str(SCRIPTS) not in sys.path:
        sys.path.insert(0, str(SCRIPTS))
    return importlib.import_module("tensorboard_check")


check_module = _check_module()
MISSING = check_module.missing_tools()
needs_browser = pytest.mark.skipif(MISSING is not None, reason=f"browser check: {MISSING}")


def _refused(url: str) -> bool:
    host, port = url.removeprefix("http://").split(":")
    with socket.socket() as probe:
        return probe.connect_ex((host, int(port))) != 0


def _sweep(root: Path) -> Path:
    """A fresh short real sweep over two hidden sizes: what the HParams table compares."""
    sweep = root / "sweep"
    args = ["-m", "debug=limit", "trainer.enable_progress_bar=false"]
    args += ["model.encoder.hidden_size=8,16", f"hydra.sweep.dir={sweep}"]
    result = _run(["-m", "rnnlab.train", *args], root, env={"RNNLAB_LOG_DIR": str(root / "logs")})
    assert result.returncode == 0, result.stderr[-3000:]
    return sweep


def test_the_server_is_stopped_when_the_block_fails(tmp_path):
    writer = SummaryWriter(str(tmp_path / "run"))
    writer.add_scalar("val/loss", 1.0, 0)
    writer.close()
    with (
        pytest.raises(RuntimeError, match="the check failed"),
        check_module.tensorboard(tmp_path) as server,
    ):
        assert not _refused(server.url)  # it was listening
        raise RuntimeError("the check failed")
    assert server.process.poll() is not None
    assert _refused(server.url)
    assert not server.log.exists()


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    return _sweep(tmp_path_factory.mktemp("browser"))


@pytest.mark.slow
@needs_browser
def test_dashboards_show_our_tags(sweep, tmp_path):
    # No rnnlab run writes text yet; one text tag, written here, keeps the Text dashboard's
    # waiter honest until one does.
    writer = SummaryWriter(str(sweep / "0" / "tensorboard"))
    writer.add_text("sample/text", "a generated sample", 1)
    writer.close()
    text = check_module.Dashboard("text", ("sample/text",))
    shots = check_module.check(sweep, tmp_path, (*check_module.DASHBOARDS, text))
    names = [shot.name for shot in shots]
    assert names == [f"tensorboard-{d}.png" for d in ("scalars", "images", "hparams", "text")]
    for shot in shots:
        assert shot.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
@needs_browser
def test_a_missing_tag_fails_the_check_and_stops_the_server(sweep, tmp_path, monkeypatch):
    servers = []
    serve = check_module.tensorboard

    @contextlib.contextmanager
    def recorded(logdir: Path, timeout: float) -> Iterator[object]:
        with serve(logdir, timeout) as server:
            servers.append(server)
            yield server

    monkeypatch.setattr(check_module, "tensorboard", recorded)
    images = check_module.Dashboard("images", ("test/confusion_matrix", "no/such/image"))
    with pytest.raises(check_module.CheckFailed, match=r"images does not show no/such/image$"):
        check_module.check(sweep, tmp_path, (images,), timeout=5)
    assert (tmp_path / "tensorboard-images.png").is_file()  # what was there instead
    assert servers[0].process.poll() is not None
    assert _refused(servers[0].url)
