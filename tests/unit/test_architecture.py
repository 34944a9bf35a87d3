"""The layering of ARCHITECTURE.md, checked on the imports of every module.

Pure cores import only cores; stages add the external systems; the apps and the flows sit
on top. Each external library is imported only in the layer that owns it.
"""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "rnnops"

LAYERS = {
    "core": {
        "config", "contract", "stage_files", "io", "text", "decision", "models",
        "predictor", "ablation", "behaviour", "batcher", "stage_output",
    },
    "stages": {
        "ingest", "preprocess", "pretrain", "train", "evaluate", "ensemble", "promote",
        "compare", "baseline",
    },
    "systems": {"tracking", "store_check", "pipeline", "locks"},
    "apps": {
        "cli", "__main__", "serving", "serving_http", "serving_models", "serving_requests",
        "scoring_protocol", "batch", "reproduce",
    },
}  # fmt: skip
MAY_IMPORT = {
    "core": {"core"},
    "stages": {"core", "stages", "systems"},
    "systems": {"core", "systems"},
    "apps": {"core", "stages", "systems", "apps"},
}
# Which top-level modules of the package may import each external library.
LIBRARY_OWNERS = {
    "prefect": set(),  # only flows/, outside the package
    "dvc": {"pipeline"},
    "mlflow": {"tracking", "serving", "serving_models"},
    "fastapi": {"serving", "serving_http", "serving_models", "serving_requests"},
    "starlette": {"serving", "serving_http", "serving_models", "serving_requests"},
    "uvicorn": {"serving", "serving_http"},
    "h11": {"serving_http"},
}
LAYER_OF = {module: layer for layer, modules in LAYERS.items() for module in modules}


def top_level_modules() -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts != ("__init__",):
            found.setdefault(parts[0], []).append(path)
    return found


def imports_of(paths: list[Path]) -> tuple[set[str], set[str]]:
    """(rnnops modules, external top-level packages) imported anywhere in ``paths``."""
    own, external = set(), set()
    for node in (n for p in paths for n in ast.walk(ast.parse(p.read_text()))):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            if node.module == "rnnops":
                own |= {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "rnnops":
                own |= set(parts[1:2])
            else:
                external.add(parts[0])
    return own, external


def test_every_module_has_a_layer():
    assert set(top_level_modules()) - LAYER_OF.keys() == set()


def test_layers_import_only_the_layers_below_them():
    wrong = {}
    for module, paths in top_level_modules().items():
        own, _ = imports_of(paths)
        layer = LAYER_OF[module]
        bad = sorted(
            m for m in own - {module, "__version__"} if LAYER_OF.get(m) not in MAY_IMPORT[layer]
        )
        if bad:
            wrong[f"{module} ({layer})"] = bad
    assert wrong == {}


def test_each_external_library_is_imported_only_by_its_owner():
    wrong = {}
    for module, paths in top_level_modules().items():
        _, external = imports_of(paths)
        for library, owners in LIBRARY_OWNERS.items():
            if library in external and module not in owners:
                wrong.setdefault(library, []).append(module)
    assert wrong == {}


def test_serving_loads_no_evaluation_code():
    code = (
        "import sys, rnnops.serving, rnnops.predictor\n"
        "print(sorted(m for m in sys.modules if m in "
        "('rnnops.evaluate', 'rnnops.train', 'rnnops.compare', 'prefect', 'dvc')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
