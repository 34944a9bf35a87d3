"""A rejected params change removes no output, on every path that runs the stages.

DVC removes a stage's outputs before the stage's command starts; the ``check_params``
stage (upstream of every other) validates the whole of params.yaml first. These tests run
a real ``dvc exp run -S`` and a real ``dvc repro`` on a copy of the session's tiny champion
project and compare every output file byte for byte.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import yaml

from conftest import BIN_DIR, copy_of_tiny_champion, run

pytestmark = pytest.mark.integration

DVC = str(BIN_DIR / "dvc")
OUTPUT_DIRS = ("data", "models", "metrics", "reports", "plots")
MARKER = Path("data") / "params_check.json"


def outputs_digest(project: Path) -> dict[str, str]:
    digest = {}
    for top in OUTPUT_DIRS:
        for path in sorted((project / top).rglob("*")):
            rel = path.relative_to(project)
            if path.is_file() and rel != MARKER:
                digest[str(rel)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digest


@pytest.fixture
def project(tmp_path_factory, tiny_nltk_data, tmp_path):
    dest, env = copy_of_tiny_champion(
        tmp_path_factory,
        tiny_nltk_data,
        tmp_path / "project",
        f"sqlite:///{tmp_path / 'mlflow.db'}",
    )
    run(["git", "add", "-A"], dest, env)
    run(["git", "commit", "-q", "-m", "reproduced"], dest, env)
    return dest, env


# (a -S assignment as a user types it, the key the message must name). Each stage's
# section: a wrong type, out of range, an unknown choice, an unknown key.
BAD_ASSIGNMENTS = [
    ("preprocess.max_len=many", "preprocess.max_len"),
    ("models.lstm.units=-4", "models.lstm.units"),
    ("models.lstm.kind=transformer", "models.lstm.kind"),
    ("evaluate.threshold=1.5", "evaluate.threshold"),
    ("pretrain.window=0", "pretrain.window"),
    # DVC refuses an unknown key by itself; with "+" it appends it, and the check refuses.
    ("+models.lstm.unitz=8", "unitz"),
]


def test_rejected_exp_run_values_remove_no_output_and_say_how_to_restore(project):
    project, env = project
    before = outputs_digest(project)
    assert any(k.startswith("models/lstm/") for k in before)
    committed = (project / "params.yaml").read_text()
    for assignment, key in BAD_ASSIGNMENTS:
        proc = run([DVC, "exp", "run", "-S", assignment], project, env, check=False)
        output = proc.stdout + proc.stderr
        assert proc.returncode != 0, assignment
        assert "rnnops check-params: error" in output, output[-2000:]
        assert key in output, (assignment, output[-2000:])
        assert "git checkout -- params.yaml" in output
        assert "Running stage 'ingest'" not in output
        assert outputs_digest(project) == before, assignment
        # The message's restore command gives the committed file back.
        run(["git", "checkout", "--", "params.yaml"], project, env)
        assert (project / "params.yaml").read_text() == committed

    # Valid again: only the check reruns; its marker's bytes are unchanged, so nothing
    # downstream of it is rerun and every output is the same file.
    proc = run([DVC, "repro"], project, env)
    assert "Running stage 'check_params'" in proc.stdout
    assert "Running stage 'ingest'" not in proc.stdout
    assert "Running stage 'train@lstm'" not in proc.stdout
    assert outputs_digest(project) == before


def test_a_bad_value_written_into_params_yaml_stops_dvc_repro_before_any_stage(project):
    project, env = project
    before = outputs_digest(project)
    raw = yaml.safe_load((project / "params.yaml").read_text())
    raw["preprocess"]["val_fraction"] = 2
    raw["models"]["lstm"]["dropout"] = "high"
    (project / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    proc = run([DVC, "repro"], project, env, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "preprocess.val_fraction" in output and "models.lstm.dropout" in output, output
    assert "Traceback" not in output
    assert outputs_digest(project) == before
