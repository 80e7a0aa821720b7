"""How the commands' own log lines look. Hydra's job logging (conf/hydra/default.yaml) sends each
record to the console and to the run's log file (``<run dir>/<command>.log``); these are the
console formatter and filter it names there. The file keeps Hydra's timestamped format."""

from __future__ import annotations

import logging

# ``extra=`` of a record that the console already shows in another form (Lightning's test table,
# a live progress bar): it goes to the log file alone.
FILE_ONLY = {"console": False}


class ConsoleFormatter(logging.Formatter):
    """A line as the user reads it: the message alone, ``warning:``/``error:`` before worse
    news (the same form as the one-line errors of ``rnnlab.run.job``)."""

    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        if record.levelno >= logging.WARNING:
            return f"{record.levelname.lower()}: {message}"
        return message


class SkipFileOnly(logging.Filter):
    """Drops the records logged with ``extra=FILE_ONLY`` (on the console handler)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return bool(getattr(record, "console", True))
