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

# A module's layer is the folder it lives in: src/rnnops/<layer>/<module>.
# testing: helpers for tests and benchmarks; nothing in the other layers imports it.
LAYERS = ("core", "stages", "systems", "apps", "testing")
MAY_IMPORT = {
    "core": {"core"},
    "stages": {"core", "stages", "systems"},
    "systems": {"core", "systems"},
    "apps": {"core", "stages", "systems", "apps"},
    "testing": {"core", "stages", "systems", "apps", "testing"},
}
# Which modules (<layer>.<module>) may import each external library.
LIBRARY_OWNERS = {
    "prefect": set(),  # only flows/, outside the package
    "dvc": {"systems.dvc_driver", "systems.dvc_experiments"},
    "mlflow": {"systems.tracking", "apps.serving", "apps.serving_models"},
    "fastapi": {"apps.serving", "apps.serving_http", "apps.serving_models", "apps.serving_requests"},
    "starlette": {"apps.serving", "apps.serving_http", "apps.serving_models", "apps.serving_requests"},
    "uvicorn": {"apps.serving", "apps.serving_http"},
    "h11": {"apps.serving_http"},
}  # fmt: skip
# The package's own entry points: `python -m rnnops` is the CLI.
TOP_LEVEL = {"__init__": None, "__main__": "apps"}


def package_modules() -> dict[str, list[Path]]:
    """<layer>.<module> (a subpackage counts as one module) -> its files."""
    found: dict[str, list[Path]] = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if len(parts) == 1:
            if TOP_LEVEL.get(parts[0]):
                found.setdefault(f"{TOP_LEVEL[parts[0]]}.{parts[0]}", []).append(path)
        elif parts[1] != "__init__":
            found.setdefault(f"{parts[0]}.{parts[1]}", []).append(path)
    return found


def layer_of(module: str) -> str:
    return module.split(".")[0]


def imports_of(paths: list[Path]) -> tuple[set[str], set[str]]:
    """(package layers, external top-level packages) imported anywhere in ``paths``."""
    layers, external = set(), set()
    for node in (n for p in paths for n in ast.walk(ast.parse(p.read_text()))):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            if node.module == "rnnops":
                layers |= {a.name for a in node.names if a.name in LAYERS}
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "rnnops":
                layers |= set(parts[1:2]) & set(LAYERS)
            else:
                external.add(parts[0])
    return layers, external


def test_the_package_has_only_the_layer_folders():
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"}
    loose = {p.stem for p in PACKAGE.glob("*.py")} - TOP_LEVEL.keys()
    assert (folders, loose) == (set(LAYERS), set())


def test_layers_import_only_the_layers_below_them():
    wrong = {}
    for module, paths in package_modules().items():
        layers, _ = imports_of(paths)
        layer = layer_of(module)
        bad = sorted(layers - MAY_IMPORT[layer])
        if bad:
            wrong[f"{module} ({layer})"] = bad
    assert wrong == {}


def test_each_external_library_is_imported_only_by_its_owner():
    wrong = {}
    for module, paths in package_modules().items():
        _, external = imports_of(paths)
        for library, owners in LIBRARY_OWNERS.items():
            if library in external and module not in owners:
                wrong.setdefault(library, []).append(module)
    assert wrong == {}


def test_serving_loads_no_evaluation_code():
    code = (
        "import sys, rnnops.apps.serving, rnnops.core.predictor\n"
        "print(sorted(m for m in sys.modules if m in "
        "('rnnops.stages.evaluate', 'rnnops.stages.train', 'rnnops.stages.compare', 'prefect', 'dvc')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# Sizes a reader can hold at once: a module they can read through, a function on a screen.
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def test_no_module_over_400_lines_and_no_function_over_60():
    too_long = []
    for path in sorted([*PACKAGE.rglob("*.py"), *(ROOT / "flows").rglob("*.py")]):
        source = path.read_text()
        where = path.relative_to(ROOT)
        if len(source.splitlines()) > MAX_MODULE_LINES:
            too_long.append(f"{where}: {len(source.splitlines())} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    too_long.append(f"{where}:{node.lineno} {node.name}: {lines} lines")
    assert not too_long, "split these:\n" + "\n".join(too_long)
