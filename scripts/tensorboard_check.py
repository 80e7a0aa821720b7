"""Check what a person sees in TensorBoard: serve a log directory, open each dashboard in
headless Chromium, wait until our tags have rendered, save a screenshot of each dashboard.

    python scripts/tensorboard_check.py logs/train/multiruns/<date_time> --out docs/figures

Needs the OS's Chromium (``apt-get install chromium``) and the ``playwright`` package, which
drives it; no browser is downloaded. Exits non-zero, naming the dashboard and the tags, when a
dashboard does not show what it should. The server is stopped however the check ends.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
VIEWPORT = {"width": 1500, "height": 900}


class CheckFailed(AssertionError):
    """A dashboard did not show our tags in time."""


@dataclass(frozen=True)
class Dashboard:
    """A TensorBoard dashboard (its plugin name, as in the URL's ``#name``), the tags it must
    render, and an optional tag filter typed in first so the screenshot shows those tags."""

    name: str
    tags: tuple[str, ...]
    tag_filter: str | None = None


# What every classification run logs. A new dashboard is one line here, provided its plugin has a
# waiter in WAITERS (the text plugin's is there for generated samples).
DASHBOARDS = (
    # per-epoch series: a chart draws a line from two points on (a test metric has one)
    Dashboard("scalars", ("train/loss_epoch", "val/loss", "val/acc"), "^(train|val)/(loss|acc)"),
    Dashboard("images", ("test/confusion_matrix",)),
    # a sweep's varying setting and the objective are columns of the table
    Dashboard("hparams", ("model.encoder.hidden_size", "val/loss_best")),
)


# --- the server ---------------------------------------------------------------------------------
@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path


def free_port() -> int:
    """A port that nothing listens on now, on the loopback interface."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _runs(url: str) -> list[str]:
    with urllib.request.urlopen(f"{url}/data/runs", timeout=2) as response:
        return list(json.load(response))


@contextlib.contextmanager
def tensorboard(logdir: Path, timeout: float = 60.0) -> Iterator[Server]:
    """``tensorboard --logdir`` on a free local port, ready once it lists a run; stopped (with
    anything it started) on leaving, whether the block succeeded or raised."""
    port = free_port()
    log = Path(tempfile.mkstemp(prefix="tensorboard-", suffix=".log")[1])
    command = [sys.executable, "-m", "tensorboard.main", f"--logdir={logdir}"]
    # the pure-Python reader: no data-server child process to outlive us
    command += ["--host=127.0.0.1", f"--port={port}", "--load_fast=false"]
    with log.open("wb") as sink:
        # its own process group, so stopping it stops all it started
        process = subprocess.Popen(command, stdout=sink, stderr=sink, start_new_session=True)
    server = Server(f"http://127.0.0.1:{port}", process, log)
    try:
        deadline = time.monotonic() + timeout
        while not _ready(server):
            if time.monotonic() > deadline:
                raise CheckFailed(f"TensorBoard listed no run of {logdir} in {timeout:.0f} s")
            time.sleep(0.2)  # polling interval, not a wait for a moment
        yield server
    finally:
        _stop(process)
        log.unlink(missing_ok=True)


def _ready(server: Server) -> bool:
    if server.process.poll() is not None:
        tail = server.log.read_text(errors="replace")[-2000:]
        raise CheckFailed(f"TensorBoard exited with {server.process.returncode}:\n{tail}")
    try:
        return bool(_runs(server.url))
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False  # not listening yet


def _stop(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


# --- the browser --------------------------------------------------------------------------------
def find_chromium() -> str | None:
    """The OS's Chromium (``RNNLAB_CHROMIUM`` overrides the search), or None."""
    named = os.environ.get("RNNLAB_CHROMIUM")
    if named:
        return named if Path(named).is_file() else None
    return next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)


def missing_tools() -> str | None:
    """Why the check cannot run here, or None when it can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[dev]')"
    if find_chromium() is None:
        return f"no Chromium found ({', '.join(CHROMIUM_NAMES)}; apt-get install chromium)"
    return None


# Each waits until ``tag`` has rendered on the open dashboard, polling the DOM through
# Playwright's locators (they see into TensorBoard's shadow DOM) for at most ``ms``.
def _scalar_rendered(page: Any, tag: str, ms: float) -> None:
    card = page.locator("tf-scalar-card", has_text=tag).first
    # a line with a path: the chart has drawn the series, not only its title
    card.locator('path.line[d]:not([d=""])').first.wait_for(timeout=ms)


def _image_rendered(page: Any, tag: str, ms: float) -> None:
    image = page.locator("tf-image-loader", has_text=tag).locator("img[src]").first
    image.wait_for(timeout=ms)
    # decode() settles once the PNG has loaded and decoded, and fails for a broken image
    if not image.evaluate("img => img.decode().then(() => img.naturalWidth)", timeout=ms):
        raise CheckFailed(f"image {tag} is empty")


def _column_shown(page: Any, tag: str, ms: float) -> None:
    # the table's header cells (the side panel lists every hparam too, shown or not)
    header = page.locator("tf-hparams-table-view vaadin-grid-cell-content").get_by_text(
        tag, exact=True
    )
    header.first.wait_for(timeout=ms)


def _text_rendered(page: Any, tag: str, ms: float) -> None:
    page.locator("tf-text-loader", has_text=tag).locator(".text").first.wait_for(timeout=ms)


WAITERS: dict[str, Callable[[Any, str, float], None]] = {
    "scalars": _scalar_rendered,
    "images": _image_rendered,
    "hparams": _column_shown,
    "text": _text_rendered,
}


def _open(page: Any, url: str, dashboard: Dashboard, ms: float) -> list[str]:
    """Open ``dashboard`` and wait for its tags; the tags that did not render."""
    from playwright.sync_api import Error as PlaywrightError

    page.goto(f"{url}/#{dashboard.name}")
    if dashboard.tag_filter:
        box = page.locator("tf-tag-filterer input").first
        box.fill(dashboard.tag_filter, timeout=ms)
    missing = []
    for tag in dashboard.tags:
        try:
            WAITERS[dashboard.name](page, tag, ms)
        except (PlaywrightError, CheckFailed):
            missing.append(tag)
    return missing


def check(
    logdir: Path,
    out: Path,
    dashboards: tuple[Dashboard, ...] = DASHBOARDS,
    timeout: float = 60.0,
) -> list[Path]:
    """Serve ``logdir``, open each dashboard in headless Chromium, wait until its tags render
    (``timeout`` seconds per tag at most), save ``out/tensorboard-<name>.png``; the screenshots.
    Raises ``CheckFailed`` naming every dashboard that missed tags, after screenshotting all
    (the screenshot shows what was there instead)."""
    from playwright.sync_api import sync_playwright

    chromium = find_chromium()
    if chromium is None:
        raise CheckFailed(missing_tools() or "no Chromium")
    out.mkdir(parents=True, exist_ok=True)
    # as root, Chromium runs only without its sandbox (CI containers run as root)
    args = ["--no-sandbox"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
    shots, failures = [], []
    with tensorboard(logdir, timeout) as server, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=args)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            for dashboard in dashboards:
                missing = _open(page, server.url, dashboard, timeout * 1000)
                shots.append(out / f"tensorboard-{dashboard.name}.png")
                page.screenshot(path=str(shots[-1]))
                if missing:
                    failures.append(f"{dashboard.name} does not show {', '.join(missing)}")
        finally:
            browser.close()
    if failures:
        raise CheckFailed(f"TensorBoard on {logdir}: " + "; ".join(failures))
    return shots


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("logdir", type=Path, help="a run or multirun directory (or logs/)")
    parser.add_argument("--out", type=Path, default=Path("docs/figures"))
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per tag at most")
    args = parser.parse_args()
    why = missing_tools()
    if why:
        raise SystemExit(f"error: cannot check TensorBoard in a browser: {why}")
    try:
        shots = check(args.logdir, args.out, timeout=args.timeout)
    except CheckFailed as failed:
        raise SystemExit(f"error: {failed}") from None
    print("\n".join(str(shot) for shot in shots))


if __name__ == "__main__":
    main()
