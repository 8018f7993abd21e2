"""What every workflow script does first: send its output to the rule's log file."""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import TextIO


class _Tee:
    """A text stream writing to several files at once."""

    def __init__(self, *streams: TextIO) -> None:
        self.streams = streams

    def write(self, text: str) -> int:
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()

    def isatty(self) -> bool:
        return False


def log_to(path: str | Path) -> logging.Logger:
    """Send stdout/stderr (progress bars included) to the rule's log `path` and return a logger
    writing there.

    Snakemake deletes a job's log before each attempt, so everything is also appended to
    `<path>.attempts`, each attempt under a header line: a retry (`snakemake --retries`) or a rerun
    after a failure never loses the first attempt's error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    current = open(path, "w", buffering=1, encoding="utf-8")  # noqa: SIM115 - lives as long as the job
    history = open(path.with_name(path.name + ".attempts"), "a", buffering=1, encoding="utf-8")  # noqa: SIM115
    stream = _Tee(current, history)
    stream.write(f"==== {time.strftime('%Y-%m-%d %H:%M:%S')} attempt started (pid {os.getpid()}) ====\n")
    sys.stdout = sys.stderr = stream
    logging.basicConfig(stream=stream, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", force=True)
    return logging.getLogger("vlmflow")
