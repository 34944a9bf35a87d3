"""A sweep's points and its summary: the space file expanded, the outcome in Markdown."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import yaml


class SweepError(RuntimeError):
    """The sweep could not run (bad space) or every point failed."""


def expand_space(space: dict[str, list] | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Points of a grid ``{key: [values]}`` (cartesian product) or a list of override sets."""
    if isinstance(space, dict):
        if not space:
            raise SweepError("the sweep space is empty")
        keys = list(space)
        values = [v if isinstance(v, list) else [v] for v in space.values()]
        if any(not v for v in values):
            raise SweepError("every key of a grid needs at least one value")
        return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*values)]
    if isinstance(space, list) and space and all(isinstance(p, dict) for p in space):
        return [dict(p) for p in space]
    raise SweepError(
        "a sweep space is a mapping of key -> list of values (a grid) or a non-empty list of "
        "override mappings"
    )


def load_space(path: str | Path) -> tuple[Any, dict[str, Any]]:
    """A sweep file: the space itself, or ``{space: ..., max_parallel: ..., promote: ...}``."""
    raw = yaml.safe_load(Path(path).read_text())
    if isinstance(raw, dict) and "space" in raw:
        options = {k: v for k, v in raw.items() if k != "space"}
        unknown = set(options) - {"max_parallel", "promote", "apply_best"}
        if unknown:
            raise SweepError(f"{path}: unknown keys {sorted(unknown)}")
        return raw["space"], options
    return raw, {}


def summary_markdown(sweep_id: str, rows: list[dict], best: dict | None, promotion: dict | None):
    lines = [f"# Sweep `{sweep_id}`", ""]
    ok = [r for r in rows if r["status"] == "completed"]
    lines += [f"{len(ok)} of {len(rows)} points completed.", ""]
    lines += [
        "| point | overrides | experiment | status | candidate | validation score | seconds |"
    ]
    lines += ["|---|---|---|---|---|---|---|"]
    for r in rows:
        score = f"{r['score']:.4f}" if r.get("score") is not None else "–"
        over = (
            ", ".join(f"`{k}={v}`" for k, v in r["overrides"].items())
            if len(r["overrides"]) <= 6  # a study point's hundreds: its experiment has them
            else f"{len(r['overrides'])} overrides"
        )
        status = r["status"] if r["status"] == "completed" else f"**{r['status']}**"
        lines.append(
            f"| {r['point']} | {over} | {r['experiment']} | {status} | {r.get('candidate') or '–'} "
            f"| {score} | {'reused' if r.get('reused') else r.get('seconds', '–')} |"
        )
    failed = [r for r in rows if r["status"] != "completed"]
    if failed:
        lines += ["", "Failures:", ""]
        lines += [f"- point {r['point']}: {r['error']}" for r in failed]
    if best:
        lines += ["", f"Best: point {best['point']} (`{best['experiment']}`), {best['score']:.4f}."]
    if promotion:
        lines += [
            f"Promotion: {promotion['registered_model']} v{promotion['candidate_version']} → "
            f"**{promotion['decision']}** ({promotion['reason']})."
        ]
    return "\n".join(lines) + "\n"
