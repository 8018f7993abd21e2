"""What every workflow script does first: send its output to the rule's log file, and read the
rule's settings."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from vlmflow.core.settings import GenerationSettings, retried_generation


def log_to(path: str | Path) -> logging.Logger:
    """Redirect stdout/stderr (progress bars included) to `path` and return a logger writing there."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    stream = open(path, "w", buffering=1, encoding="utf-8")  # noqa: SIM115 - lives as long as the job
    sys.stdout = sys.stderr = stream
    logging.basicConfig(stream=stream, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", force=True)
    return logging.getLogger("vlmflow")


def generation_settings(job: Any, log: logging.Logger) -> GenerationSettings:
    """The rule's `params.generation`; on a retry after running out of memory (`resources.batch_divisor`
    above 1) with the batch divided, which the log says."""
    settings = GenerationSettings(**job.params.generation)
    if job.resources.batch_divisor > 1:
        settings = retried_generation(settings, job.resources.batch_divisor)
        log.warning("attempt %d: batch size %d", job.attempt, settings.batch_size)
    return settings
