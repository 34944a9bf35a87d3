"""The flows and the stages share one contract: every RNNOPS_* variable is named in
rnnops.core.contract and nowhere else as a string, and every name there has a reader."""

import re
from pathlib import Path

from rnnops.core import contract

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [*(ROOT / "src" / "rnnops").rglob("*.py"), *(ROOT / "flows").glob("*.py")]
CONTRACT = ROOT / "src" / "rnnops" / "core" / "contract.py"


def test_environment_variables_are_spelled_only_in_the_contract():
    spelled = {
        path.relative_to(ROOT).as_posix(): sorted(set(re.findall(r"[\"']RNNOPS_[A-Z_]+", text)))
        for path in SOURCES
        if path != CONTRACT and (text := path.read_text())
    }
    assert {path: names for path, names in spelled.items() if names} == {}


def test_every_contract_name_is_used_outside_the_contract():
    names = [n for n in vars(contract) if n.isupper() and n != "ENV_TAGS"]
    used = "\n".join(p.read_text() for p in SOURCES if p != CONTRACT)
    carried = {env for env, _ in contract.ENV_TAGS} | {tag for _, tag in contract.ENV_TAGS}
    unused = [
        n for n in names if not re.search(rf"\b{n}\b", used) and getattr(contract, n) not in carried
    ]
    assert unused == []
