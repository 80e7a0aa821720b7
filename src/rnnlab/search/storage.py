"""Where a study is kept: ``hydra.sweeper.storage`` as an Optuna storage.

- a database URL (``sqlite:///optuna.db``, ``postgresql://user@host/db``, ``mysql://...``):
  Optuna's RDB storage, for one machine (SQLite) or workers anywhere that reach the server;
- any other value, a file path (``optuna.journal``): Optuna's journal file storage, an
  append-only log that workers on a shared file system (NFS, a cluster's home) write to;
- null: a journal file in the sweep's own directory, so the search's jobs (in other processes
  too, with ``hydra/launcher=local`` or ``slurm``) report to it and ``rnnlab.summary`` finds it.

Relative paths are read from the directory the command was started in, in the sweeper and in
every job alike.
"""

from __future__ import annotations

import importlib.util
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from rnnlab.utils.errors import ConfigError

if TYPE_CHECKING:
    from optuna.storages import BaseStorage

# The journal a search without a storage keeps in its sweep directory.
SWEEP_JOURNAL = "optuna.journal"
# Two workers starting on a fresh database both create its tables; the loser retries.
OPEN_ATTEMPTS = 5


def storage_url(storage: str | None, sweep_dir: str | Path, cwd: str | Path) -> str:
    """The storage a search uses, absolute: the database URL with a relative SQLite path made
    absolute, the journal file's absolute path, or the sweep directory's journal for null."""
    if storage is None or str(storage).strip() in ("", "null"):
        return str(Path(cwd, sweep_dir, SWEEP_JOURNAL).absolute())
    text = str(storage).strip()
    if "://" not in text:
        return str(Path(cwd, text).expanduser().absolute())
    scheme, rest = text.split("://", 1)
    if scheme == "sqlite" and rest.startswith("/") and not rest.startswith("//"):
        path = rest[1:]  # sqlite:///relative.db (three slashes) is relative to the cwd
        if path and path != ":memory:":
            return f"sqlite:///{Path(cwd, path).absolute()}"
    if scheme == "postgresql" and _lacks("psycopg2") and not _lacks("psycopg"):
        # SQLAlchemy's default PostgreSQL driver is psycopg2; rnnlab installs psycopg (3)
        return f"postgresql+psycopg://{rest}"
    return text


def is_journal(url: str) -> bool:
    return "://" not in url


def _lacks(module: str) -> bool:
    return importlib.util.find_spec(module) is None


def open_storage(url: str, heartbeat_s: int | None = None) -> BaseStorage:
    """The Optuna storage at ``url`` (from ``storage_url``); a ConfigError in one line when it
    cannot be opened (no such folder, a missing database driver, a server that refuses).
    ``heartbeat_s``: a database keeps each running trial's last sign of life, and a trial silent
    for three such intervals counts as stale (its worker was killed; ``fail_stale_trials``)."""
    from optuna.exceptions import ExperimentalWarning
    from optuna.storages import JournalStorage, RDBStorage
    from optuna.storages.journal import JournalFileBackend

    if is_journal(url):
        folder = Path(url).parent
        if not folder.is_dir():
            raise ConfigError(
                f"cannot keep the study in {url}: no folder {folder}; create it, or set "
                "hydra.sweeper.storage to a file in an existing folder"
            )
        try:
            return JournalStorage(JournalFileBackend(url))
        except OSError as exc:
            raise ConfigError(f"cannot open the study's journal {url}: {exc.strerror}") from exc
    # SQLite: wait for another worker's write rather than fail at once (the default is 5 s)
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    for attempt in range(OPEN_ATTEMPTS):
        try:
            with warnings.catch_warnings():  # heartbeats: "experimental" since Optuna 2.9
                warnings.simplefilter("ignore", ExperimentalWarning)
                return RDBStorage(
                    url,
                    engine_kwargs=engine,
                    heartbeat_interval=heartbeat_s,
                    grace_period=3 * heartbeat_s if heartbeat_s else None,
                )
        except ModuleNotFoundError as exc:
            raise ConfigError(
                f"the storage {shown_url(url)} needs the database driver {exc.name}; install it "
                "(pip install 'psycopg[binary]' for PostgreSQL)"
            ) from exc
        except Exception as exc:  # SQLAlchemy's errors: a bad URL, a refused connection
            if attempt + 1 < OPEN_ATTEMPTS and _is_creation_race(exc):
                time.sleep(0.5 * (attempt + 1))
                continue
            detail = " ".join(str(exc).split())[:200]
            raise ConfigError(
                f"cannot open the storage {shown_url(url)}: {type(exc).__name__}: {detail}; "
                "check hydra.sweeper.storage"
            ) from exc
    raise AssertionError("unreachable")  # pragma: no cover


def _is_creation_race(exc: Exception) -> bool:
    text = str(exc).lower()
    return any(sign in text for sign in ("already exists", "locked", "duplicate", "unique"))


def shown_url(url: str) -> str:
    """A storage URL fit for a message or a log: its password left out."""
    if "://" not in url or "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}{':***' if ':' in credentials else ''}@{host}"
