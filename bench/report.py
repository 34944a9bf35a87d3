"""Regenerate the README "Results" section from bench/results/{quality,speed}.json.

    python bench/report.py [--readme README.md]

The section lies between the markers ``<!-- results:start -->`` and
``<!-- results:end -->``; everything outside them is left as it is.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- results:start -->", "<!-- results:end -->"


LABELS = {
    "best_single_r8": "best single recurrent model, R8 accuracy",
    "best_single_r52": "best single recurrent model, R52 accuracy",
    "best_single_topics90": "best single recurrent model, 90-topic micro-F1",
    "no_skip_topics90": "best recurrent model without an embedding skip, 90-topic micro-F1",
    "article_r8": "the article's network (Embedding → SimpleRNN → SimpleRNN → Dense), R8",
    "article_topics90": "the article's network, 90-topic micro-F1",
    "ensemble_topics90": "the ensemble, 90-topic micro-F1",
}


def verdict_lines(verdicts: dict) -> list[str]:
    lines = []
    for key, v in verdicts.items():
        state = "met" if v["met"] else "**not met**"
        if "value" not in v and v["met"] is None:
            for model, ok in v["models"].items():
                lines.append(
                    f"- candidate `{model}`: "
                    + (
                        "earns its place (it may join the defaults)"
                        if ok
                        else "does **not** beat its skip-only twin by the margins, so it "
                        "stays out of the defaults"
                    )
                )
            continue
        if "value" not in v:
            with_skip = ", ".join(f"`{m}`" for m in v["models"]) or "none"
            behind = [m for m, ok in v["models"].items() if not ok]
            lines.append(
                "- every default model with a skip ahead of its skip-only twin by ≥ 0.5 point "
                f"micro-F1 and ≥ 2 points macro-F1 (90 topics; defaults with a skip: "
                f"{with_skip}): {state}"
                + (f" ({', '.join(f'`{m}`' for m in behind)} behind)" if behind else "")
            )
            continue
        shown = "–" if v["value"] is None else f"`{v['model']}` {v['value']:.4f} ± {v['sd']:.4f}"
        baseline = f", TF-IDF + SVM {v['baseline']:.4f}" if "baseline" in v else ""
        lines.append(
            f"- {LABELS.get(key, key)}: {shown}{baseline} (target ≥ {v['target']}: {state})"
        )
    return lines


def quality_section(q: dict) -> list[str]:
    seeds = ", ".join(str(s) for s in q["seeds"])
    tasks = ", ".join(q["tasks"])
    lines = [
        "### Quality",
        "",
        f"`bench/quality.py` trains every model of `params.yaml` with the pipeline's own stage "
        f"code on {tasks} (R8 and R52 single-label, accuracy; 90 topics multi-label, "
        f"micro-F1), seeds {seeds} (mean ± standard deviation, test split), beside a TF-IDF + "
        "linear SVM and the majority class computed on the same splits in the same run "
        f'({q["total_seconds"] / 60:.0f} min on this machine). Each "best" below is the '
        "model with the best **validation** mean; its test mean is what is shown.",
        "",
        q["table_markdown"],
        "",
    ]
    for name, members in (q.get("ensembles") or {}).items():
        lines += [
            f"`{name}` is the pipeline's ensemble of {', '.join(f'`{m}`' for m in members)}: "
            "one model whose scores are the mean of theirs (threshold tuned on validation "
            "as for any model); its time is the sum of its members'.",
            "",
        ]
    if q.get("candidates"):
        lines += [
            "Candidates measured beside the defaults (a default model with some keys "
            "changed, from `bench/candidates.yaml` or the file given to `--candidates`; not "
            f"in `params.yaml`): {', '.join(f'`{c}`' for c in q['candidates'])}.",
            "",
        ]
    if q.get("twins_markdown"):
        generated = q.get("generated_twins") or []
        lines += [
            "**Ablation (90 topics).** Each model with an embedding skip beside its skip-only "
            "twin (the same network without its recurrent layers: a bag of embeddings) and its "
            "no-skip twin (without the skip), same data and seeds"
            + (
                f"; {', '.join(f'`{g}`' for g in generated)} are twins trained by the "
                "benchmark only"
                if generated
                else ""
            )
            + ".",
            "",
            q["twins_markdown"],
            "",
        ]
    lines += ["![quality](bench/results/quality.png)", "", *verdict_lines(q["verdicts"])]
    checks = q.get("behavioural") or {}
    if checks:
        lines += [
            "",
            f"Behavioural checks on `{checks['model']}` (chosen on validation; 90 topics, seed "
            f"{checks['seed']}, 500 test stories):",
            "",
            "| check | kind | passed | needed |",
            "|---|---|---|---|",
        ]
        for r in checks["results"]:
            lines.append(
                f"| {r['name']} | {r['kind']} | {r['passed']}/{r['cases']} "
                f"({r['pass_rate']:.1%}) | {r['min_pass_rate']:.0%} |"
            )
    no_evidence = q.get("no_evidence_topic_share") or {}
    if no_evidence:
        lines += [
            "",
            "Documents without evidence (made-up words, other scripts, stop words, punctuation) "
            "that still got a topic, per model (90 topics, mean over seeds; 0% is right):",
            "",
            "| model | share with a topic |",
            "|---|---|",
            *(f"| {m} | {v:.0%} |" for m, v in no_evidence.items()),
        ]
    return lines


def speed_section(s: dict) -> list[str]:
    total = s["total_seconds"]
    c0 = next(iter(s["train_vs_bare"].values()))
    lines = [
        "",
        "### Speed",
        "",
        "`bench/speed.py`: the default pipeline (`dvc repro`, stage by stage) and, on its data, "
        "each train stage against a bare Keras loop of the identical model (same arrays, sample "
        "weights, batch size and validation data; no callbacks, no tracking), "
        f"{c0['epochs']} epochs each with early stopping and refit off, in {c0['repeats']} "
        "rounds. In each round the two run side by side and take turns, one epoch each "
        "(`bench/pace.py`), so every epoch of one side runs right beside an epoch of the "
        "other. Each epoch is timed from its start to the next one's, so the stage's "
        "end-of-epoch work is inside it. Throughput is training documents / seconds of the "
        "fastest steady epoch (each fit's first epoch, which also traces the functions, left "
        "out), because on this 2-core VM an epoch can take two to five times as long as the "
        "one before, with the same CPU time and the cores partly idle, in either side. "
        "Beside it: the "
        "median ratio of the epoch pairs that ran back to back, the ratio of the total epoch "
        "times, and the median pair ratio of CPU time per epoch.",
        "",
        "| stage | seconds | peak MiB |",
        "|---|---|---|",
    ]
    for stage, seconds in s["stage_seconds"].items():
        lines.append(f"| {stage} | {seconds:.1f} | {s['stage_peak_mib'][stage]:.0f} |")
    lines += [
        f"| **whole pipeline** | **{total:.0f} ({total / 60:.1f} min)** | |",
        "",
        "| model | s/epoch (pipeline) | bare docs/s | stage docs/s | stage / bare | "
        "pair ratio (median) | total ratio | CPU s/epoch bare | CPU s/epoch stage | "
        "CPU bare / stage | peak MiB bare | peak MiB stage |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, c in s["train_vs_bare"].items():
        lines.append(
            f"| {name} | {s['per_epoch'][name]['seconds_per_epoch']:.1f} | "
            f"{c['bare_docs_per_second']:.0f} | {c['stage_docs_per_second']:.0f} | "
            f"{c['throughput_ratio']:.3f} | {c['pair_ratio_median']:.3f} | "
            f"{c['total_ratio']:.3f} | "
            f"{c['bare_cpu_seconds_per_epoch']:.2f} | {c['stage_cpu_seconds_per_epoch']:.2f} | "
            f"{c['cpu_ratio']:.3f} | "
            f"{c['bare_peak_mib']:.0f} | {c['stage_peak_mib']:.0f} |"
        )
    lines.append("")
    lines.append(
        f"Targets: whole pipeline ≤ 10 min ({'met' if total <= 600 else 'not met'}), "
        f"train stage ≥ 0.95× the bare loop (lowest {s['lowest_throughput_ratio']:.3f}: "
        f"{'met' if s['lowest_throughput_ratio'] >= 0.95 else 'not met'})."
    )
    return lines


def stale_models(speed: dict) -> str | None:
    """A warning when the speed results were measured on other models than params.yaml's."""
    import yaml

    current = set((yaml.safe_load((ROOT / "params.yaml").read_text()) or {}).get("models", {}))
    measured = set(speed.get("train_vs_bare", {}))
    if current == measured:
        return None
    return (
        f"**These speed figures are of other models** ({', '.join(sorted(measured))}) than "
        f"the current defaults ({', '.join(sorted(current))}): rerun `make bench-speed`."
    )


def render(results: Path) -> str:
    lines = [
        START,
        "<!-- Generated by `make bench` (bench/report.py) from bench/results/; edit there. -->",
        "",
    ]
    quality, speed = results / "quality.json", results / "speed.json"
    if quality.exists():
        lines += quality_section(json.loads(quality.read_text()))
    if speed.exists():
        measured = json.loads(speed.read_text())
        lines += speed_section(measured)
        stale = stale_models(measured)
        if stale:
            lines += ["", stale]
    lines.append(END)
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--readme", default=str(ROOT / "README.md"))
    parser.add_argument("--results", default=str(ROOT / "bench/results"))
    args = parser.parse_args()
    readme = Path(args.readme)
    text = readme.read_text()
    if START not in text or END not in text:
        print(f"{readme}: no {START} … {END} markers; add them where the section belongs")
        return 1
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(head + render(Path(args.results)) + tail)
    print(f"updated the Results section of {readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
