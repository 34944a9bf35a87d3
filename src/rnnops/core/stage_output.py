"""What a line of a stage's output means to the person watching: its level, or noise.

The flows stream DVC's output into the Prefect log line by line. DVC, TensorFlow and MLflow
print start-up and bookkeeping lines that say nothing about the run; the stages' own log
lines carry their level (``HH:MM:SS LEVEL name: message``), which the log should keep.
"""

from __future__ import annotations

import logging
import re

# Lines that repeat for every stage or come from library start-up, never about this run.
NOISE = tuple(
    re.compile(pattern)
    for pattern in (
        r"^\s*$",
        r"^To track the changes with git, run:",
        r"^\s*git add .*dvc\.lock",
        r"^To enable auto staging, run:",
        r"^\s*dvc config core\.autostage true",
        r"^Use `dvc push` to send your updates",
        r"^[EIWF]\d{4} \d\d:\d\d:[\d.]+\s+\d+ ",  # absl / TensorFlow C++ start-up
        r"^WARNING: All log messages before absl::InitializeLog",
        r"oneDNN custom operations are on",
        r"This TensorFlow binary is optimized",
        r"To enable the following instructions",
        r"Unable to register cu(DNN|FFT|BLAS) factory",
        r"computation placer already registered",
        r"Could not find cuda drivers",
        r"\bcuda_(dnn|fft|blas|executor)\b",
        r"INFO (alembic\.runtime\.migration|mlflow\.store\.db\.utils): ",
        r"^(Context impl SQLiteImpl|Will assume non-transactional DDL)",
    )
)
LEVELED = re.compile(r"^\d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR|CRITICAL) ")
DVC_LEVEL = re.compile(r"^(ERROR|WARNING): ")
LEVELS = {
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARNING": logging.WARNING,
    "ERROR": logging.ERROR,
    "CRITICAL": logging.CRITICAL,
}


def classify(line: str) -> tuple[int, str] | None:
    """``(level, text)`` for a line worth showing, or None for noise."""
    text = line.rstrip()
    if any(pattern.search(text) for pattern in NOISE):
        return None
    found = LEVELED.match(text) or DVC_LEVEL.match(text)
    if found:
        return LEVELS[found.group(1)], text
    if text.startswith("Traceback (most recent call last)"):
        return logging.ERROR, text
    return logging.INFO, text
