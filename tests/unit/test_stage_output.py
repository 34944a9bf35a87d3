"""Stage output reaches the log line by line, at its level, without tool noise."""

import logging
import subprocess
import sys
import time

import pytest

from rnnops.core.stage_output import classify
from rnnops.stages.train_callbacks import epoch_progress
from rnnops.systems.dvc_driver import run_streaming


@pytest.mark.parametrize(
    "line",
    [
        "To track the changes with git, run:",
        "\tgit add dvc.lock models/.gitignore",
        "To enable auto staging, run:",
        "\tdvc config core.autostage true",
        "E0000 00:00:1796126884.612836    7525 node_def_util.cc:682] NodeDef mentions",
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        "12:01:02 INFO mlflow.store.db.utils: Creating initial MLflow database tables...",
        "12:01:02 INFO alembic.runtime.migration: Running upgrade  -> 451aebb31d03",
        "   ",
    ],
)
def test_tool_noise_is_dropped(line):
    assert classify(line) is None


@pytest.mark.parametrize(
    ("line", "level"),
    [
        ("12:01:02 INFO rnnops.stages.train: epoch 3/20 4.1s", logging.INFO),
        ("12:01:02 WARNING rnnops: MLflow run x not found", logging.WARNING),
        ("12:01:02 ERROR rnnops: boom", logging.ERROR),
        ("ERROR: failed to reproduce 'train@lstm'", logging.ERROR),
        ("WARNING: Output 'x' is not cached", logging.WARNING),
        ("Running stage 'train@lstm':", logging.INFO),
        ("Traceback (most recent call last):", logging.ERROR),
    ],
)
def test_lines_keep_their_level(line, level):
    assert classify(line) == (level, line)


def test_epoch_progress_says_where_training_is_and_what_is_left():
    assert epoch_progress(3, 20, 4.06, 12.3) == "3/20 4.1s (elapsed 12.3s, at most 70s left)"
    assert epoch_progress(20, 20, 4.0, 80.0).endswith("at most 0s left)")


def test_lines_arrive_while_the_command_runs_not_at_its_end():
    script = "import sys, time\nfor i in range(3):\n    print(f'line {i}', flush=True)\n    print(f'err {i}', file=sys.stderr, flush=True)\n    time.sleep(0.4)\n"
    seen: list[tuple[float, str]] = []
    start = time.monotonic()
    proc = run_streaming(
        [sys.executable, "-c", script],
        ".",
        on_line=lambda line: seen.append((time.monotonic(), line)),
    )
    ended = time.monotonic()
    assert proc.returncode == 0
    assert [line for _, line in seen] == ["line 0", "err 0", "line 1", "err 1", "line 2", "err 2"]
    assert seen[0][0] - start < ended - start - 0.6  # the first line came long before the end
    assert proc.stdout.splitlines() == [line for _, line in seen]


def test_a_command_over_its_timeout_is_killed_and_reported():
    with pytest.raises(subprocess.TimeoutExpired):
        run_streaming([sys.executable, "-c", "import time; time.sleep(30)"], ".", timeout=0.5)
