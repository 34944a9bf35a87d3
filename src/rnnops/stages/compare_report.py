"""The comparison report's Markdown: the models' table, the ablation, the baseline gap,
the figures' places and the length buckets (:func:`rnnops.stages.compare.run_compare`
computes what it shows)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def bag_gaps_markdown(rows: list[dict]) -> list[str]:
    """Each recurrent model beside the run's bag-of-embeddings models."""
    if not rows:
        return []
    lines = [
        "## Beside the bag of embeddings",
        "",
        "Each recurrent model against each model of this run with no recurrent layer "
        "(`layers: 0`: the embeddings pooled straight into the classifier), test "
        "micro-F1 / macro-F1: what the recurrent layers score beyond a bag of words.",
        "",
        "| model | micro / macro | bag of embeddings | its micro / macro | difference |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['micro_f1']:.4f} / {r['macro_f1']:.4f} | {r['bag']} "
            f"| {r['bag_micro_f1']:.4f} / {r['bag_macro_f1']:.4f} "
            f"| {r['gain_micro_f1']:+.4f} / {r['gain_macro_f1']:+.4f} |"
        )
    return [*lines, ""]


def ablation_markdown(rows: list[dict]) -> list[str]:
    """The ablation section: each model with a skip beside its skip-only and no-skip twins."""
    if not rows:
        return []

    def cell(value, signed=False):
        if value is None:
            return "–"
        return f"{value:+.4f}" if signed else f"{value:.4f}"

    lines = [
        "## Ablation: what the recurrent layer and the skip add",
        "",
        "Each model with an embedding skip beside its skip-only twin (the same network "
        "without its recurrent layers: embeddings, skip pooling, classifier) and its no-skip "
        "twin (without the skip), trained in this run on the same data (test micro-F1 / "
        "macro-F1; – where this run has no such model).",
        "",
        "| model | micro / macro | skip-only twin | its micro / macro | recurrent layer adds "
        "| no-skip twin | its micro / macro | skip adds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {cell(r['micro_f1'])} / {cell(r['macro_f1'])} "
            f"| {r['skip_only_twin'] or '–'} "
            f"| {cell(r['skip_only_micro_f1'])} / {cell(r['skip_only_macro_f1'])} "
            f"| {cell(r['gain_over_skip_only_micro_f1'], True)} / "
            f"{cell(r['gain_over_skip_only_macro_f1'], True)} "
            f"| {r['no_skip_twin'] or '–'} "
            f"| {cell(r['no_skip_micro_f1'])} / {cell(r['no_skip_macro_f1'])} "
            f"| {cell(r['gain_over_no_skip_micro_f1'], True)} / "
            f"{cell(r['gain_over_no_skip_macro_f1'], True)} |"
        )
    return [*lines, ""]


def _fmt(value) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and not np.isfinite(value)):
        return "–"
    if isinstance(value, (float, np.floating)):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:,.1f}"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    return str(value)


def markdown_table(frame: pd.DataFrame) -> list[str]:
    cols = list(frame.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(_fmt(v) for v in row) + " |")
    return lines


def promotion_line(promotion: dict) -> str:
    """Which version is the champion after this run, in the promote stage's words."""
    name = promotion.get("registered_model", "?")
    candidate = f"`{promotion.get('candidate')}` (v{promotion.get('candidate_version')})"
    if promotion.get("decision") == "champion":
        champion = f"**{name} v{promotion.get('candidate_version')}**, {candidate}"
    elif promotion.get("champion_version"):
        champion = f"**{name} v{promotion['champion_version']}** (kept)"
    else:
        champion = "none"
    return (
        f"Champion (`models:/{name}@champion`): {champion}. Candidate {candidate}: "
        f"{promotion.get('decision')}: {promotion.get('reason')}"
    )


def report_markdown(
    summary: pd.DataFrame,
    per_class: pd.DataFrame,
    buckets: pd.DataFrame,
    baseline: dict | None,
    figures: dict[str, str],
    task: str,
    ablation: list[dict] = (),
    bag_gaps: list[dict] = (),
    promotion: dict | None = None,
) -> str:
    """The report in markdown; ``figures`` maps a figure name to its link target.

    ``promotion``: the promote stage's ``reports/promotion.json``, which names the champion.
    """
    lines = ["# Model comparison: SimpleRNN vs LSTM (and friends)", ""]
    lines += [
        f"Task: {task}. `val_*` columns: the validation split, which tuned each threshold "
        "and ranks the models; the other metrics: the held-out test split, which only "
        "reports.",
        "",
    ]
    if len(summary) and pd.notna(summary.iloc[0]["val_macro_f1"]):
        best = summary.iloc[0]
        lines += [
            f"Best by validation macro-F1: **{best['model']}** ({best['val_macro_f1']:.4f}; "
            f"test {best['macro_f1']:.4f}).",
            "",
        ]
    if promotion:
        lines += [promotion_line(promotion), ""]
    lines += ["## Models", "", *markdown_table(summary), ""]
    lines += ablation_markdown(list(ablation))
    lines += bag_gaps_markdown(list(bag_gaps))
    if baseline:
        lines += _baseline_markdown(summary, baseline)
    lines += ["## Learning curves", "", f"![learning curves]({figures['learning_curves.png']})", ""]
    lines += ["## Per-class F1", "", f"![per-class F1]({figures['per_class_f1.png']})", ""]
    lines += [*markdown_table(per_class), ""]
    lines += [
        "## By document length",
        "",
        "Test documents in length buckets (quartiles of the token count before truncation): "
        "where do long documents hurt SimpleRNN?",
        "",
        f"![metrics by length]({figures['length_buckets.png']})",
        "",
    ]
    if len(buckets):
        lines += ["micro-F1 by bucket:", "", *markdown_table(_buckets_wide(buckets)), ""]
    return "\n".join(lines) + "\n"


def _baseline_markdown(summary: pd.DataFrame, baseline: dict) -> list[str]:
    """Each model's gap to TF-IDF + linear SVM on the same split."""
    gap = summary[["model", "accuracy", "micro_f1", "macro_f1"]].copy()
    for key in ("accuracy", "micro_f1", "macro_f1"):
        gap[f"{key} − SVM"] = gap[key] - baseline[key]
    gap = gap[["model", "accuracy − SVM", "micro_f1 − SVM", "macro_f1 − SVM"]]
    return [
        "## Gap to the TF-IDF + linear SVM baseline",
        "",
        f"Baseline `tfidf_linear_svm`: accuracy {baseline['accuracy']:.4f}, micro-F1 "
        f"{baseline['micro_f1']:.4f}, macro-F1 {baseline['macro_f1']:.4f} "
        f"(fit in {baseline['train_seconds']:.1f}s).",
        "",
        *markdown_table(gap),
        "",
    ]


def _buckets_wide(buckets: pd.DataFrame) -> pd.DataFrame:
    """micro-F1 with a row per length bucket and a column per model."""
    wide = buckets.pivot(index="bucket", columns="model", values="micro_f1")
    order = list(dict.fromkeys(buckets["bucket"]))
    docs = buckets.drop_duplicates("bucket").set_index("bucket")["documents"]
    wide = wide.loc[order, list(dict.fromkeys(buckets["model"]))].reset_index()
    wide.insert(1, "documents", [int(docs[b]) for b in order])
    return wide
