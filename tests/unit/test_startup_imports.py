"""Each stage is a process of its own: it imports only what its command runs.

On two cores each heavy library costs a stage process seconds before it does any work
(scikit-learn about 2 s, NLTK 2 s since it loads SciPy, Keras 6-8 s, MLflow 4 s), and a
pipeline starts about ten such processes.
"""

import json
import subprocess
import sys

from rnnops.testing.projects import PROJECT_ROOT

HEAVY = {"sklearn", "scipy", "nltk", "tensorflow", "keras", "mlflow"}


def top_level_modules_after(code: str) -> set[str]:
    """The top-level packages a fresh interpreter holds after running ``code``."""
    report = "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    proc = subprocess.run(
        [sys.executable, "-c", code + report], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return {name.split(".")[0] for name in json.loads(proc.stdout.splitlines()[-1])}


def test_check_params_loads_no_heavy_library(tmp_path):
    marker = tmp_path / "params_check.json"
    argv = ["--params", str(PROJECT_ROOT / "params.yaml"), "check-params", "--out", str(marker)]
    code = f"from rnnops.apps.cli import main\nassert main({argv!r}) == 0"
    loaded = top_level_modules_after(code)
    assert marker.exists()
    assert not loaded & HEAVY, sorted(loaded & HEAVY)


def test_reading_datasets_and_encoding_text_load_neither_nltk_nor_scikit_learn():
    # Every stage after preprocess loads datasets; serving encodes text with core.text.
    loaded = top_level_modules_after("import rnnops.stages.preprocess, rnnops.core.text")
    unwanted = {"sklearn", "scipy", "nltk"}
    assert not loaded & unwanted, sorted(loaded & unwanted)


def test_an_input_error_raised_by_the_stage_still_exits_2(tmp_path):
    # The error types that mean "the input is wrong" are looked up only after a failure.
    proc = subprocess.run(
        [sys.executable, "-m", "rnnops", "--params", str(PROJECT_ROOT / "params.yaml"),
         "train", "no-such-model", "--data", str(tmp_path / "data"),
         "--out", str(tmp_path / "model")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "model 'no-such-model' is not defined under models:" in proc.stderr
    assert not (tmp_path / "model").exists()
