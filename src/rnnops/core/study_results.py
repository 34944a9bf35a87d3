"""The study's answers: its result rows summarised over seeds, compared in pairs, in words.

Input rows are one per (point, model) with test and validation metrics and micro-F1 per
document-length quartile (see :mod:`rnnops.stages.study`). Comparisons are paired by seed:
two models of the same point saw the same data and the same seed, so the difference per
seed is what varies, and its spread is what decides whether a sentence may say "beats".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

# A difference is claimed when it is at least this large and twice its standard error.
MIN_CLAIM = 0.002


@dataclass(frozen=True)
class Difference:
    n: int
    mean: float
    sd: float

    @property
    def clear(self) -> bool:
        if self.n < 2:
            return False
        return abs(self.mean) >= MIN_CLAIM and abs(self.mean) >= 2 * self.sd / math.sqrt(self.n)


def headline_metric(task_kind: str) -> str:
    """Accuracy for single-label tasks (R8, R52), micro-F1 for the multi-label topics."""
    return "accuracy" if task_kind == "singlelabel" else "micro_f1"


def mean_sd(values: list[float]) -> tuple[float, float]:
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return mean, sd


def value_of(row: dict[str, Any], metric: str, quartile: int | None = None) -> float | None:
    if quartile is None:
        return row.get(metric)
    quartiles = row.get("quartiles") or []
    if not quartiles:
        return None
    return quartiles[quartile if quartile >= 0 else len(quartiles) + quartile].get(metric)


def paired(
    rows: list[dict],
    a: str,
    b: str,
    metric: str,
    quartile: int | None = None,
    **where: Any,
) -> Difference | None:
    """``a`` minus ``b`` per seed, over the rows matching ``where`` (task, probe, group)."""
    chosen = [r for r in rows if all(r.get(k) == v for k, v in where.items())]
    by_seed: dict[int, dict[str, float]] = {}
    for r in chosen:
        if r["model"] in (a, b):
            value = value_of(r, metric, quartile)
            if value is not None:
                by_seed.setdefault(r["seed"], {})[r["model"]] = value
    diffs = [v[a] - v[b] for v in by_seed.values() if a in v and b in v]
    if not diffs:
        return None
    mean, sd = mean_sd(diffs)
    return Difference(len(diffs), mean, sd)


def points(value: float) -> str:
    return f"{100 * value:.2f}"


def sentence(a: str, b: str, diff: Difference, what: str) -> str:
    """``what``: the metric and place, e.g. "accuracy on R8's longest quartile"."""
    spread = f"{points(abs(diff.mean))} ± {points(diff.sd)} points"
    seeds = f"{diff.n} seed{'s' if diff.n != 1 else ''}"
    if diff.n < 2:
        leader, other = (a, b) if diff.mean >= 0 else (b, a)
        return (
            f"On {what}, {leader} scores {points(abs(diff.mean))} points above {other} on one "
            "seed: with no spread to weigh it against, too weak to tell."
        )
    if not diff.clear:
        return (
            f"On {what}, {a} and {b} differ by {spread} ({seeds}): within the seed spread, "
            "too weak to tell."
        )
    leader, other = (a, b) if diff.mean > 0 else (b, a)
    return f"On {what}, {leader} beats {other} by {spread} ({seeds})."


def gated_pairs(cells: dict[str, dict]) -> list[tuple[str, str]]:
    """(gated cell, SimpleRNN cell) with the same directions, from the study's cells."""
    simple = [n for n, c in cells.items() if c["kind"] == "simple_rnn"]
    gated = [n for n, c in cells.items() if c["kind"] in ("lstm", "gru")]
    return [
        (g, s)
        for g in gated
        for s in simple
        if bool(cells[g].get("bidirectional")) == bool(cells[s].get("bidirectional"))
    ]


def direction_pairs(cells: dict[str, dict]) -> list[tuple[str, str]]:
    """(bidirectional cell, one-direction cell) of the same kind."""
    return [
        (bi, uni)
        for bi, c in cells.items()
        for uni, d in cells.items()
        if c.get("bidirectional") and not d.get("bidirectional") and c["kind"] == d["kind"]
    ]


def summary_rows(rows: list[dict], metric: str, **where: Any) -> list[dict]:
    """One row per model: mean ± sd over seeds of ``metric``, macro-F1 and validation."""
    chosen = [r for r in rows if all(r.get(k) == v for k, v in where.items())]
    models = list(dict.fromkeys(r["model"] for r in chosen))
    out = []
    for model in models:
        mine = [r for r in chosen if r["model"] == model]
        first = mine[0]
        out.append(
            {
                "model": model,
                "role": first.get("role"),
                "kind": first.get("kind"),
                "bidirectional": first.get("bidirectional"),
                "skip": first.get("skip"),
                "units": first.get("units"),
                "recurrent_weights": first.get("recurrent_weights"),
                "seeds": len(mine),
                metric: mean_sd([r[metric] for r in mine]),
                "macro_f1": mean_sd([r["macro_f1"] for r in mine]),
                f"val_{metric}": mean_sd([r[f"val_{metric}"] for r in mine]),
                "quartiles": [
                    mean_sd([r["quartiles"][q]["micro_f1"] for r in mine])
                    for q in range(min(len(r.get("quartiles") or []) for r in mine))
                ],
                "train_seconds": mean_sd([r.get("train_seconds") or 0.0 for r in mine])[0],
            }
        )
    return out


def fmt(pair: tuple[float, float], n: int) -> str:
    mean, sd = pair
    if math.isnan(mean):
        return "–"
    return f"{mean:.4f} ± {sd:.4f}" if n > 1 else f"{mean:.4f}"


def task_table(summary: list[dict], metric: str, svm: dict | None) -> list[str]:
    lines = [
        f"| model | cell | directions | embedding skip | recurrent weights | test {metric} "
        f"| test macro-F1 | validation {metric} | train s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summary:
        bag = s["role"] == "skip_only"
        cell = "none (bag of embeddings)" if bag else s["kind"]
        directions = "–" if bag else (2 if s["bidirectional"] else 1)
        lines.append(
            f"| `{s['model']}` | {cell} | {directions} "
            f"| {'yes' if s['skip'] else 'no'} | {s['recurrent_weights']:,} "
            f"| {fmt(s[metric], s['seeds'])} | {fmt(s['macro_f1'], s['seeds'])} "
            f"| {fmt(s[f'val_{metric}'], s['seeds'])} | {s['train_seconds']:.0f} |"
        )
    if svm:
        lines.append(
            f"| TF-IDF + linear SVM | – | – | – | – | {svm[metric]:.4f} | {svm['macro_f1']:.4f} "
            f"| – | {svm.get('train_seconds', 0):.0f} |"
        )
    return lines
