"""The study report in Markdown: answers as sentences with their spread, then the tables."""

from __future__ import annotations

from typing import Any

from rnnops.core.study_plan import STANDARD_PROBE
from rnnops.core.study_results import (
    Difference,
    direction_pairs,
    fmt,
    gated_pairs,
    headline_metric,
    mean_sd,
    paired,
    sentence,
    summary_rows,
    task_table,
    value_of,
)

TASK_TITLES = {"r8": "R8", "r52": "R52", "topics90": "the 90 topics"}


def title(task: str) -> str:
    return TASK_TITLES.get(task, task)


def quartile_gap(rows: list[dict], a: str, b: str, **where: Any) -> Difference | None:
    """Per seed: (a - b) on the longest quartile minus (a - b) on the shortest (micro-F1)."""
    chosen = [r for r in rows if all(r.get(k) == v for k, v in where.items())]
    by_seed: dict[int, dict[str, dict]] = {}
    for r in chosen:
        if r["model"] in (a, b) and r.get("quartiles"):
            by_seed.setdefault(r["seed"], {})[r["model"]] = r
    gaps = []
    for pair in by_seed.values():
        if a in pair and b in pair:
            long = value_of(pair[a], "micro_f1", -1) - value_of(pair[b], "micro_f1", -1)
            short = value_of(pair[a], "micro_f1", 0) - value_of(pair[b], "micro_f1", 0)
            gaps.append(long - short)
    if not gaps:
        return None
    mean, sd = mean_sd(gaps)
    return Difference(len(gaps), mean, sd)


def _probe_words(probe: str, probes: dict[str, dict]) -> str:
    if probe == STANDARD_PROBE:
        return "the standard data"
    settings = ", ".join(f"{k}: {v}" for k, v in probes.get(probe, {}).items())
    return f"the {probe} probe ({settings})"


def gates_section(rows, tasks, kinds, cells) -> list[str]:
    lines = ["### Do gated cells beat the SimpleRNN at the same budget?", ""]
    pairs = gated_pairs(cells)
    for task in tasks:
        metric = headline_metric(kinds[task])
        for a, b in pairs:
            d = paired(rows, a, b, metric, task=task, probe=STANDARD_PROBE, group="cells")
            if d:
                lines.append(f"- {sentence(f'`{a}`', f'`{b}`', d, f'{title(task)} ({metric})')}")
    return lines if len(lines) > 2 else []


def long_range_section(rows, tasks, cells, probes) -> list[str]:
    lines = [
        "### Long-range dependence: where the evidence is late",
        "",
        "Test documents in quartiles of their token count before truncation (micro-F1). If "
        "gates carry information further, the gated cell's lead over the SimpleRNN grows "
        "from the shortest quartile to the longest, most of all under a probe that removes "
        "the lead of long stories.",
        "",
    ]
    for task in tasks:
        for probe in [STANDARD_PROBE, *probes]:
            where = {"task": task, "probe": probe, "group": "cells"}
            for a, b in gated_pairs(cells):
                d = paired(rows, a, b, "micro_f1", quartile=-1, **where)
                if d is None:
                    continue
                place = f"the longest quartile of {title(task)}, {_probe_words(probe, probes)}"
                lines.append(f"- {sentence(f'`{a}`', f'`{b}`', d, place)}")
                gap = quartile_gap(rows, a, b, **where)
                if gap is not None:
                    grows = "grows" if gap.mean > 0 else "shrinks"
                    verdict = (
                        "one seed: too weak to tell"
                        if gap.n < 2
                        else ("a clear change" if gap.clear else "within the seed spread")
                    )
                    lines.append(
                        f"  - From the shortest to the longest quartile, `{a}`'s lead over "
                        f"`{b}` {grows} by {100 * abs(gap.mean):.2f} ± {100 * gap.sd:.2f} points "
                        f"({gap.n} seed{'s' if gap.n != 1 else ''}; {verdict})."
                    )
    return lines if len(lines) > 5 else []


def bag_section(rows, tasks, kinds, cells) -> list[str]:
    lines = [
        "### Does the recurrent layer add to the bag of embeddings?",
        "",
        "`boe` is the skip-only model: the same embeddings, pooled straight into the "
        "classifier, no recurrent layer.",
        "",
    ]
    for task in tasks:
        metric = headline_metric(kinds[task])
        where = {"task": task, "probe": STANDARD_PROBE, "group": "cells"}
        for cell in cells:
            for name in (cell, f"{cell}_skip"):
                d = paired(rows, name, "boe", metric, **where)
                if d:
                    lines.append(
                        f"- {sentence(f'`{name}`', '`boe`', d, f'{title(task)} ({metric})')}"
                    )
    return lines if len(lines) > 5 else []


def directions_section(rows, tasks, kinds, cells) -> list[str]:
    lines = ["### Does reading both ways help?", ""]
    for task in tasks:
        metric = headline_metric(kinds[task])
        for a, b in direction_pairs(cells):
            d = paired(rows, a, b, metric, task=task, probe=STANDARD_PROBE, group="cells")
            if d:
                lines.append(f"- {sentence(f'`{a}`', f'`{b}`', d, f'{title(task)} ({metric})')}")
    return lines if len(lines) > 2 else []


def remedies_section(rows, tasks, kinds) -> list[str]:
    lines = [
        "### The article's overfitting remedies, on the article's network",
        "",
        "Each variant adds one remedy to `article` (the article's network with none of them: "
        "no dropout, no L2, every epoch trained and the last kept).",
        "",
    ]
    for task in tasks:
        metric = headline_metric(kinds[task])
        variants = list(
            dict.fromkeys(
                r["model"] for r in rows if r["task"] == task and r.get("role") == "remedy"
            )
        )
        for v in variants:
            d = paired(rows, v, "article", metric, task=task, group="remedies")
            if d:
                lines.append(f"- {sentence(f'`{v}`', '`article`', d, f'{title(task)} ({metric})')}")
        curve = learning_curve(rows, task, metric)
        if len(curve) > 1:
            lines += ["", f"More data ({title(task)}, `article`, test {metric}):", ""]
            lines += ["| share of the training split | seeds | test | validation |"]
            lines += ["|---|---|---|---|"]
            lines += [
                f"| {f:g} | {n} | {fmt(test, n)} | {fmt(val, n)} |" for f, n, test, val in curve
            ]
    return lines if len(lines) > 5 else []


def learning_curve(rows: list[dict], task: str, metric: str) -> list[tuple]:
    """(fraction, seeds, test mean ± sd, validation mean ± sd) of the remedies' baseline."""
    mine = [
        r
        for r in rows
        if r["task"] == task and r["model"] == "article" and r["group"] in ("remedies", "fraction")
    ]
    out = []
    for fraction in sorted({r["fraction"] for r in mine}):
        part = [r for r in mine if r["fraction"] == fraction]
        out.append(
            (
                fraction,
                len(part),
                mean_sd([r[metric] for r in part]),
                mean_sd([r[f"val_{metric}"] for r in part]),
            )
        )
    return out


def quartile_table(summary: list[dict]) -> list[str]:
    width = max((len(s["quartiles"]) for s in summary), default=0)
    if not width:
        return []
    head = " | ".join(f"Q{q + 1}" for q in range(width))
    lines = [f"| model | {head} |", "|---|" + "---|" * width]
    for s in summary:
        cells = " | ".join(fmt(q, s["seeds"]) for q in s["quartiles"])
        lines.append(f"| `{s['model']}` | {cells} |")
    return lines


def _header(study_id: str, rows: list[dict], meta: dict[str, Any]) -> list[str]:
    seeds = sorted({r["seed"] for r in rows})
    lines = [
        f"# The RNN-vs-LSTM study (`{study_id}`)",
        "",
        f"{meta['points']} DVC experiments ({meta.get('trained', 0)} trained in this run, "
        f"{meta.get('reused', 0)} read back, {meta.get('failed', 0)} failed); "
        f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''} ({', '.join(map(str, seeds))}); "
        f"tasks: {', '.join(title(t) for t in meta['tasks'])}.",
        "",
        "Every model chose its epoch (early stopping) and decision threshold on validation "
        "documents carved from the training split; the test split only reports. Differences "
        "are paired by seed (same data, same seed) and shown as mean ± sd of the per-seed "
        "differences; a sentence says *beats* only when the mean is at least twice its "
        "standard error and 0.2 points.",
        "",
    ]
    if meta.get("budget"):
        lines += [
            f"Each cell's units were solved so its recurrent layers hold about "
            f"{meta['budget']:,} weights (the default bidirectional LSTM's).",
            "",
        ]
    return lines


def _results_section(rows: list[dict], baselines: dict, meta: dict[str, Any]) -> list[str]:
    kinds, probes = meta["tasks"], meta.get("probes", {})
    lines = ["## Results per task", ""]
    for task in kinds:
        metric = headline_metric(kinds[task])
        for probe in [STANDARD_PROBE, *probes]:
            summary = summary_rows(rows, metric, task=task, probe=probe, group="cells")
            if not summary:
                continue
            lines += [f"### {title(task)}, {_probe_words(probe, probes)}", ""]
            svm = baselines.get(task) if probe == STANDARD_PROBE else None
            lines += [*task_table(summary, metric, svm), ""]
            quartiles = quartile_table(summary)
            if quartiles:
                edges = meta.get("quartile_edges", {}).get(task)
                where = f" (token counts {edges})" if edges else ""
                lines += [
                    f"Micro-F1 by test-document length quartile{where}:",
                    "",
                    *quartiles,
                    "",
                ]
    return lines


def study_markdown(
    study_id: str,
    rows: list[dict],
    baselines: dict[str, dict],
    meta: dict[str, Any],
    figures: dict[str, str],
) -> str:
    """``meta``: tasks (name -> task kind), cells (name -> model config), probes, points."""
    tasks, kinds = list(meta["tasks"]), meta["tasks"]
    cells, probes = meta["cells"], meta.get("probes", {})
    lines = [*_header(study_id, rows, meta), "## Answers", ""]
    for section in (
        gates_section(rows, tasks, kinds, cells),
        long_range_section(rows, tasks, cells, probes),
        bag_section(rows, tasks, kinds, cells),
        directions_section(rows, tasks, kinds, cells),
        remedies_section(rows, tasks, kinds),
    ):
        if section:
            lines += [*section, ""]
    lines += _results_section(rows, baselines, meta)
    if figures:
        lines += ["## Figures", ""]
        lines += [f"![{name}]({path})" for name, path in figures.items()]
        lines += [""]
    minutes = sum(r.get("train_seconds") or 0 for r in rows) / 60
    lines += [
        "## Cost",
        "",
        f"Training time summed over the models of this report: {minutes:.0f} min on this machine.",
    ]
    return "\n".join(lines) + "\n"
