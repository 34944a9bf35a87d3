"""dvc.yaml lists, for every stage, each module of the package its command runs.

A change to code a stage runs must rerun that stage (`dvc repro`); the code a stage runs is
the CLI (`rnnops.apps.cli` and the command bodies in `rnnops.apps.commands`) plus the import
closure of its stage module. MLflow tracking is left out on purpose (where runs are logged
does not change what a stage computes), except for promote, whose decisions are registry
operations.
"""

import ast
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "rnnops"
# Modules that only talk to the tracking store or name its tags.
TRACKING_ONLY = {"systems.tracking", "systems.store_check", "core.contract"}
STAGE_MODULES = {
    "check_params": {"core.config"},
    "ingest": {"stages.ingest"},
    "preprocess": {"stages.preprocess"},
    "pretrain": {"stages.pretrain"},
    "train": {"stages.train"},
    "evaluate": {"stages.evaluate"},
    "ensemble": {"stages.ensemble"},
    "evaluate_ensemble": {"stages.evaluate"},
    "promote": {"stages.promote", "systems.tracking"},
    "compare": {"stages.compare", "core.ablation", "stages.baseline"},
}


def source_of(module: str) -> Path:
    """``layer.module``'s file, or its folder for a subpackage (a dvc.yaml dep can be a folder)."""
    path = PACKAGE.joinpath(*module.split("."))
    return path if path.is_dir() else path.with_suffix(".py")


def imported_modules(module: str) -> set[str]:
    source = source_of(module)
    files = sorted(source.rglob("*.py")) if source.is_dir() else [source]
    found = set()
    for node in (n for f in files for n in ast.walk(ast.parse(f.read_text()))):
        if isinstance(node, ast.ImportFrom) and node.module:
            parts = node.module.split(".")
            if parts[0] == "rnnops" and len(parts) > 2:
                found.add(".".join(parts[1:3]))
            elif parts[0] == "rnnops" and len(parts) == 2:
                found |= {f"{parts[1]}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {
                ".".join(a.name.split(".")[1:3]) for a in node.names if a.name.startswith("rnnops.")
            }
    return {m for m in found if m.count(".") == 1 and source_of(m).exists()}


def closure(modules: set[str]) -> set[str]:
    seen, todo = set(modules), list(modules)
    while todo:
        for dep in imported_modules(todo.pop()) - TRACKING_ONLY - seen:
            seen.add(dep)
            todo.append(dep)
    return seen


def cli_modules() -> set[str]:
    """The command line every stage process loads: ``apps.cli`` and the package modules it
    imports at module level (the commands import their stage's code when they run)."""
    seen, todo = {"apps.cli"}, ["apps.cli"]
    while todo:
        tree = ast.parse(source_of(todo.pop()).read_text())
        for node in tree.body:
            if (
                isinstance(node, ast.ImportFrom)
                and node.module
                and node.module.startswith("rnnops")
            ):
                parts = node.module.split(".")
                found = (
                    {".".join(parts[1:3])}
                    if len(parts) > 2
                    else {f"{parts[1]}.{a.name}" for a in node.names}
                )
                for module in found - seen:
                    if module.startswith("apps.") and source_of(module).exists():
                        seen.add(module)
                        todo.append(module)
    return seen


def test_every_stage_depends_on_the_code_it_runs():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert set(stages) == set(STAGE_MODULES), "a stage without its module list here"
    missing = {}
    for name, stage in stages.items():
        deps = set((stage.get("do") or stage).get("deps", []))
        needed = {source_of(m).relative_to(ROOT).as_posix() for m in closure(STAGE_MODULES[name])}
        needed |= {source_of(m).relative_to(ROOT).as_posix() for m in cli_modules()}
        if needed - deps:
            missing[name] = sorted(needed - deps)
    assert not missing, f"dvc.yaml deps miss code their stage runs: {missing}"
