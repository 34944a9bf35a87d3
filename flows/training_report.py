"""The training flow's report, the Markdown artifact a Prefect run shows: what ran, the
models ranked by validation, where their MLflow runs and the comparison report are."""

from __future__ import annotations

from typing import Any


def report_markdown(summary: dict[str, Any], runs: list[dict], versions: list[dict]) -> str:
    lines = ["# Training flow report", ""]
    if summary.get("noop"):
        lines += ["Nothing changed (data, code and params): no stage ran.", ""]
    if summary.get("experiment"):
        lines += [f"DVC experiment: `{summary['experiment']}`", ""]
    if summary.get("stages"):
        ran = [s for s, r in summary["stages"].items() if r]
        lines += [f"Stages run: {', '.join(ran) or 'none'}", ""]
    if runs:
        # Ranked by validation macro-F1, what selection reads; test is only reported.
        cols = ["accuracy", "micro_f1", "macro_f1"]
        header = ["model", "validation macro_f1", *(f"test {c}" for c in cols), "MLflow run"]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        nan = float("nan")

        def validation_score(r: dict) -> float:
            return r.get("validation", {}).get("macro_f1", -1.0)

        for r in sorted(runs, key=lambda r: -validation_score(r)):
            url = r.get("url") or ""
            link = f"[{r['run_id'][:8]}]({url})" if url.startswith("http") else f"`{r['run_id']}`"
            cells = [
                r["model"],
                f"{r.get('validation', {}).get('macro_f1', nan):.4f}",
                *(f"{r['metrics'].get(c, nan):.4f}" for c in cols),
                f"{link} ({r['status']})",
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        if not all((r.get("url") or "").startswith("http") for r in runs):
            # A SQLite store has no web address: say how to open the UI, not the file path.
            lines += [
                "The runs are in a local MLflow store: open its UI with `make ui`, then "
                "http://127.0.0.1:5000/#/experiments?workflowType=machine_learning (experiment "
                f"`{summary.get('mlflow_experiment', '')}`); search a run id there.",
                "",
            ]
    comparison = summary.get("comparison")
    if comparison:
        # A browser does not follow file:// links out of the Prefect UI: the report is
        # linked where it can be opened, in the MLflow runs' artifacts, and named on disk.
        linked = [r for r in runs if (r.get("url") or "").startswith("http")]
        where = (
            f"[in the artifacts of the `{linked[0]['model']}` run]"
            f"({linked[0]['url'].replace('?', '/artifacts/comparison/comparison.html?', 1)})"
            if linked
            else "in each MLflow run's artifacts under `comparison/`"
        )
        lines += [
            "Comparison report (the models side by side, per-class F1, by document length, "
            f"gap to TF-IDF + SVM): {where}; on disk `{comparison}`.",
            "",
        ]
    for v in versions:
        lines.append(
            f"- registered version **{v['version']}** → {v['decision']}: {v['reason']} "
            f"(aliases: {', '.join(v['aliases']) or 'none'})"
        )
    return "\n".join(lines) + "\n"
