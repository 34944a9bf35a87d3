"""Benchmark: model quality on R8, R52 and the 90-topic task, three seeds, beside TF-IDF + SVM.

Trains every model of ``params.yaml`` with the pipeline's own stage code
(ingest → preprocess → train → evaluate, then ensemble → evaluate for every
ensemble whose members are trained) on each task and seed, and beside every model
with an embedding skip its two ablation twins (``rnnops.core.ablation``: the same network
without its recurrent layers, and without its skip; a twin that ``params.yaml``
already defines is that model, otherwise it is trained here as ``NAME-skip-only`` /
``NAME-no-skip``). Computes the TF-IDF + linear SVM and majority-class baselines on
the same splits in the same run, and prints the tables (mean ± standard deviation
over seeds) with the targets and the published reference.

Every "best" is chosen by the **validation** mean of the task's headline metric and
reported with its test mean: test never selects. The behavioural checks run on the
90-topic model that validation picks; every 90-topic model also reports the share of
documents without evidence (made-up words, other scripts, stop words) that it still gave a
topic. Writes bench/results/quality.json and
bench/results/quality.png.

Candidate models (``bench/candidates.yaml``: a model of params.yaml with some keys
changed) are trained beside the defaults, with their twins, so the rule for joining the
defaults can be checked before a candidate is added.

    NLTK_DATA=/path/to/nltk_data python bench/quality.py [--seeds 42,43,44]
        [--tasks topics90,r8,r52] [--models rnn,lstm] [--candidates bench/candidates.yaml]
        [--no-twins] [--set models.lstm.epochs=2 ...]
    python bench/quality.py --merge part1.json part2.json   # parts measured --models apart

Seed s trains each model with its own ``seed`` shifted by s - 42: with every model at
seed 42 that is seed s; two members differing only in seed stay different.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from rnnops.core.config import parse_params  # noqa: E402
from rnnops.core.overrides import apply_overrides  # noqa: E402
from rnnops.stages.baseline import majority_class, tfidf_svm  # noqa: E402

# Each task is the pipeline's preprocess stage with these settings.
TASKS = {
    "r8": {"task": "singlelabel", "label_set": "r8"},
    "r52": {"task": "singlelabel", "label_set": "r52"},
    "topics90": {"task": "multilabel", "label_set": "all"},
}
# The headline metric per task: accuracy for the single-label sets, micro-F1 for 90 topics.
HEADLINE = {"r8": "accuracy", "r52": "accuracy", "topics90": "micro_f1"}
# The best single recurrent model (no ensemble), per task.
TARGETS = {"r8": 0.975, "r52": 0.942, "topics90": 0.872}
NO_SKIP_TARGET = 0.86  # the best recurrent model without an embedding skip, 90 topics
ARTICLE_TARGETS = {"r8": 0.93, "topics90": 0.80}  # Embedding → SimpleRNN → SimpleRNN → Dense
ENSEMBLE_TARGET = 0.889  # 90 topics
# A model earns its place when it beats its skip-only twin by these (90 topics, seed means).
TWIN_MARGIN = {"micro_f1": 0.005, "macro_f1": 0.02}
# Published recurrent result on the same split (Adhikari et al., 2019: a regularised
# BiLSTM distilled from BERT, with pretrained word vectors), 90 topics, micro-F1.
PUBLISHED = {"model": "published: BiLSTM (reg., distilled from BERT)", "topics90": 0.889}
BASE_SEED = 42


def seeded(cfg, seed: int):
    return cfg.model_copy(update={"seed": cfg.seed + seed - BASE_SEED})


def mean_sd(values: list[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def evaluate_row(name, evaluate_cfg, model_dir: Path, data_dir: Path, work: Path) -> dict:
    from rnnops.stages.evaluate import run_evaluate

    metrics = run_evaluate(
        name,
        evaluate_cfg,
        model_dir,
        data_dir,
        work / "metrics" / f"{name}.json",
        work / "plots" / name,
        work / "reports" / name,
    )
    return {
        **{k: metrics[k] for k in ("accuracy", "micro_f1", "macro_f1")},
        **{f"val_{k}": metrics["validation"][k] for k in ("accuracy", "micro_f1", "macro_f1")},
        "model_dir": str(model_dir),
        "report_dir": str(work / "reports" / name),
    }


def train_and_evaluate(name, cfg, evaluate_cfg, data_dir: Path, work: Path) -> dict:
    from rnnops.stages.train import run_train

    model_dir = work / "models" / name
    summary = run_train(name, cfg, data_dir, model_dir, pretrained_dir=data_dir / "pretrained")
    return {
        **evaluate_row(name, evaluate_cfg, model_dir, data_dir, work),
        "train_seconds": summary.train_seconds,
        "seconds_per_epoch": summary.seconds_per_epoch,
        "epochs": summary.epochs_run,
    }


def ensemble_and_evaluate(name, members, evaluate_cfg, data_dir: Path, work: Path) -> dict:
    """The pipeline's ensemble stage on the members trained in ``work``, then evaluate."""
    from rnnops.stages.ensemble import run_ensemble

    model_dir = work / "ensembles" / name
    summary = run_ensemble(name, members, work / "models", model_dir)
    return {
        **evaluate_row(name, evaluate_cfg, model_dir, data_dir, work),
        "train_seconds": summary.train_seconds,
        "seconds_per_epoch": None,
        "epochs": None,
    }


def load_predictor(row: dict, data_dir: Path):
    """The text-in predictor of an evaluated row, as the registered model wraps it."""
    from rnnops.core.predictor import TopicPredictor

    return TopicPredictor.from_files(
        Path(row["model_dir"]) / "model.keras",
        data_dir / "vocab.json",
        Path(row["report_dir"]) / "decision.json",
    )


def no_evidence_share(row: dict, data_dir: Path) -> float:
    """The share of documents without evidence (rnnops.core.behaviour.no_evidence_texts) that
    the model, with its decision rule, still gave a topic: 0 is right."""
    from rnnops.core import behaviour

    return behaviour.no_evidence_topic_share(load_predictor(row, data_dir))


def behavioural(best: dict, data_dir: Path, raw_path: Path) -> list[dict]:
    import pandas as pd

    from rnnops.core import behaviour
    from rnnops.core.text import document_text

    predictor = load_predictor(best, data_dir)
    raw = pd.read_parquet(raw_path)
    raw = raw[raw["split"] == "test"]
    texts = [
        document_text(t, x, include_title=True)
        for t, x in zip(raw["title"], raw["text"], strict=True)
    ]
    results = behaviour.run_checks(predictor, texts, sample=500)
    for r in results:
        print("  " + r.summary())
        for failure in r.failures[:3]:
            print("      " + failure)
    return [r.to_dict() for r in results]


def behavioural_only(out: Path) -> int:
    from rnnops.stages.ingest import run_ingest
    from rnnops.stages.preprocess import run_preprocess
    from rnnops.stages.pretrain import run_pretrain

    result = json.loads(out.read_text())
    name, seed = result["behavioural"]["model"], result["behavioural"]["seed"]
    raw = apply_overrides(
        yaml.safe_load((ROOT / "params.yaml").read_text()), result.get("overrides") or {}
    )
    params = parse_params(raw, "params.yaml")
    with tempfile.TemporaryDirectory(prefix="rnnops-quality-") as tmp:
        tmp = Path(tmp)
        raw_path, data_dir = tmp / "reuters.parquet", tmp / "topics90" / "data"
        run_ingest(params.ingest, raw_path, ROOT)
        run_preprocess(params.preprocess.model_copy(update=TASKS["topics90"]), raw_path, data_dir)
        run_pretrain(params.pretrain, data_dir, data_dir / "pretrained")
        work = tmp / "work"
        if name in params.ensembles:
            members = params.ensembles[name].members
            for member in members:
                cfg = seeded(params.models[member], seed)
                train_and_evaluate(member, cfg, params.evaluate, data_dir, work)
            row = ensemble_and_evaluate(name, members, params.evaluate, data_dir, work)
        else:
            row = train_and_evaluate(
                name, seeded(params.models[name], seed), params.evaluate, data_dir, work
            )
        recorded = next(
            r["micro_f1"]
            for r in result["runs"]
            if (r["task"], r["model"], r["seed"]) == ("topics90", name, seed)
        )
        print(f"{name} seed {seed}: micro-F1 {row['micro_f1']:.4f} (recorded {recorded:.4f})")
        print(f"behavioural checks on {name} (seed {seed}):")
        result["behavioural"]["results"] = behavioural(row, data_dir, raw_path)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"updated the behavioural section of {out}")
    return 0


def aggregate(runs: list[dict]) -> dict:
    """{task: {model: {metric: [mean, sd], ...}}} over seeds."""
    table: dict = {}
    for row in runs:
        table.setdefault(row["task"], {}).setdefault(row["model"], []).append(row)
    out: dict = {}
    for task, models in table.items():
        for model, rows in models.items():
            entry = {"seeds": [r["seed"] for r in rows]}
            for key in (
                "accuracy",
                "micro_f1",
                "macro_f1",
                "val_accuracy",
                "val_micro_f1",
                "val_macro_f1",
                "train_seconds",
                "seconds_per_epoch",
                "no_evidence_topic_share",
            ):
                vals = [r[key] for r in rows if r.get(key) is not None]
                if vals:
                    entry[key] = [round(v, 4) for v in mean_sd(vals)]
            out.setdefault(task, {})[model] = entry
    return out


def render_table(summary: dict, models: list[str], tasks: list[str]) -> str:
    """Markdown: one row per model, the headline metric per task as mean ± sd."""
    head = ["model"] + [f"{t} {HEADLINE[t].replace('_', '-')}" for t in tasks]
    if "topics90" in tasks:
        head.append("topics90 macro-F1")
    head.append("train s (90 topics)" if "topics90" in tasks else "train s")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    time_task = "topics90" if "topics90" in tasks else tasks[0]

    def cell(entry, key):
        if not entry or key not in entry:
            return ""
        mean, sd = entry[key]
        return f"{mean:.4f}" + (f" ± {sd:.4f}" if sd else "")

    for model in models:
        row = [model] + [cell(summary.get(t, {}).get(model), HEADLINE[t]) for t in tasks]
        if "topics90" in tasks:
            row.append(cell(summary.get("topics90", {}).get(model), "macro_f1"))
        entry = summary.get(time_task, {}).get(model, {})
        row.append(f"{entry['train_seconds'][0]:.1f}" if "train_seconds" in entry else "")
        lines.append("| " + " | ".join(row) + " |")
    lines.append(
        "| published: BiLSTM, distilled from BERT | "
        + " | ".join(f"{PUBLISHED[t]:.3f}" if t in PUBLISHED else "" for t in tasks)
        + (" | " if "topics90" in tasks else "")
        + " |  |"
    )
    lines.append(
        "| **target** | "
        + " | ".join(f"≥ {TARGETS[t]:.3f}" for t in tasks)
        + (" | " if "topics90" in tasks else "")
        + " |  |"
    )
    return "\n".join(lines)


def plot(summary: dict, models: list[str], tasks: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 4.2), squeeze=False)
    colors = plt.get_cmap("tab10")
    for ax, task in zip(axes[0], tasks, strict=True):
        metric = HEADLINE[task]
        names = [m for m in models if m in summary.get(task, {})]
        means = [summary[task][m][metric][0] for m in names]
        sds = [summary[task][m][metric][1] for m in names]
        bars = ax.bar(
            range(len(names)),
            means,
            yerr=sds,
            capsize=4,
            color=[colors(i) for i in range(len(names))],
        )
        for bar, mean in zip(bars, means, strict=True):
            ax.text(
                bar.get_x() + bar.get_width() / 2,
                mean + 0.01,
                f"{mean:.3f}",
                ha="center",
                va="bottom",
                fontsize=8,
            )
        ax.axhline(TARGETS[task], color="black", linestyle="--", linewidth=1, label="target")
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        ax.set_ylim(0, 1.05)
        ax.set_title(f"{task}: test {metric.replace('_', '-')}")
        ax.legend(loc="lower right", fontsize=8)
    fig.suptitle("rnnops quality: mean ± sd over seeds; baselines computed in the same run")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def load_candidates(path: Path | None, params) -> dict:
    """Candidate configs by name: ``{name: {base: MODEL, set: {key: value}}}`` in ``path``."""
    from rnnops.core.config import ModelConfig

    if path is None:
        return {}
    raw = yaml.safe_load(Path(path).read_text()) or {}
    out = {}
    for name, entry in raw.items():
        unknown = set(entry) - {"base", "set"}
        if unknown or entry.get("base") not in params.models or name in params.models:
            raise SystemExit(
                f"{path}: {name}: needs base: (one of {', '.join(params.models)}) and set:, "
                f"and a name that params.yaml does not use (unknown keys: {sorted(unknown)})"
            )
        base = params.models[entry["base"]].model_dump()
        out[name] = ModelConfig.model_validate({**base, **(entry.get("set") or {})})
    return out


def with_twins(params, models: list[str], candidates: dict) -> tuple[dict, dict]:
    """Every model to train (configs by name, twins included) and the twins of each."""
    from rnnops.core.ablation import NO_SKIP, SKIP_ONLY, find_twins, twins_of

    configs = {**{m: params.models[m] for m in models}, **candidates}
    twins = find_twins(configs)
    for name, roles in twins.items():
        for role, twin_cfg in twins_of(configs[name]).items():
            if roles[role] is None:
                roles[role] = f"{name}-{role.replace('_', '-')}"
                configs[roles[role]] = twin_cfg
    assert all(set(r) == {SKIP_ONLY, NO_SKIP} for r in twins.values())
    return configs, twins


def pick(summary: dict, task: str, names: list[str]) -> str | None:
    """The name with the best validation mean of the task's headline metric."""
    key = f"val_{HEADLINE[task]}"
    names = [n for n in names if key in summary.get(task, {}).get(n, {})]
    return max(names, key=lambda n: summary[task][n][key][0]) if names else None


def verdict(summary: dict, task: str, name: str | None, target: float) -> dict:
    if name is None:
        return {"model": None, "value": None, "sd": None, "target": target, "met": False}
    mean, sd = summary[task][name][HEADLINE[task]]
    return {"model": name, "value": mean, "sd": sd, "target": target, "met": mean >= target}


def twin_rows(summary: dict, twins: dict, names: list[str]) -> list[dict]:
    """90 topics: each model with a skip beside its twins, and whether it earns its place."""
    task = summary.get("topics90", {})
    rows = []
    for name in names:
        if name not in twins or name not in task:
            continue
        row = {"model": name, **{k: task[name][k] for k in ("micro_f1", "macro_f1")}}
        for role, twin in twins[name].items():
            row[role] = twin
            row[f"{role}_scores"] = {k: task.get(twin, {}).get(k) for k in ("micro_f1", "macro_f1")}
        only = row["skip_only_scores"]
        row["margin"] = {
            k: None if only[k] is None else round(row[k][0] - only[k][0], 4) for k in TWIN_MARGIN
        }
        row["earns_its_place"] = all(
            row["margin"][k] is not None and row["margin"][k] >= v for k, v in TWIN_MARGIN.items()
        )
        rows.append(row)
    return rows


def render_twins(rows: list[dict]) -> str:
    def cell(pair):
        return "–" if pair is None else f"{pair[0]:.4f} ± {pair[1]:.4f}"

    lines = [
        "| model | micro-F1 | macro-F1 | skip-only twin: micro-F1 | macro-F1 | no-skip twin: "
        "micro-F1 | macro-F1 | ahead of skip-only twin (micro / macro) | earns its place |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        m = r["margin"]
        lines.append(
            f"| {r['model']} | {cell(r['micro_f1'])} | {cell(r['macro_f1'])} "
            f"| {cell(r['skip_only_scores']['micro_f1'])} "
            f"| {cell(r['skip_only_scores']['macro_f1'])} "
            f"| {cell(r['no_skip_scores']['micro_f1'])} | {cell(r['no_skip_scores']['macro_f1'])} "
            f"| {m['micro_f1']:+.4f} / {m['macro_f1']:+.4f} "
            f"| {'yes' if r['earns_its_place'] else '**no**'} |"
        )
    return "\n".join(lines)


def write_results(
    out: Path,
    tasks: list[str],
    all_tasks: list[str],
    runs: list[dict],
    baselines: list[dict],
    checks: dict,
    configs: dict,
    twins: dict,
    generated: list[str],
    models: list[str],
    ensembles: dict,
    overrides: dict,
    seeds: list[int],
    started: float,
) -> dict:
    """Summarise the tasks done so far and write quality.json and its plot (after every task,
    so a long run that is stopped keeps what it finished)."""
    clean = [{k: v for k, v in r.items() if k not in ("model_dir", "report_dir")} for r in runs]
    recurrent = [*configs, *ensembles]
    rows = [*recurrent, "tfidf_linear_svm", "majority_class"]
    summary = aggregate(clean + [{**b, "seed": None} for b in baselines])
    table = render_table(summary, rows, tasks)
    ablation = twin_rows(summary, twins, list(twins))
    twins_table = render_twins(ablation) if ablation and "topics90" in tasks else ""
    print(f"\n{table}\n\n{twins_table}\n")

    # The defaults' recurrent models: neither candidates, twins nor bags of embeddings.
    single = [m for m in models if configs[m].layers]
    no_skip = [m for m in models if configs[m].layers and not configs[m].embedding_skip]
    article = [
        m
        for m in models
        if configs[m].kind == "simple_rnn"
        and configs[m].layers == 2
        and configs[m].pooling == "last"
        and not configs[m].embedding_skip
    ]
    verdicts = {}
    for task in tasks:
        v = verdict(summary, task, pick(summary, task, single), TARGETS[task])
        v["baseline"] = summary[task]["tfidf_linear_svm"][HEADLINE[task]][0]
        verdicts[f"best_single_{task}"] = v
        if task in ARTICLE_TARGETS:
            verdicts[f"article_{task}"] = verdict(
                summary, task, pick(summary, task, article), ARTICLE_TARGETS[task]
            )
    if "topics90" in tasks:
        verdicts["no_skip_topics90"] = verdict(
            summary, "topics90", pick(summary, "topics90", no_skip), NO_SKIP_TARGET
        )
        if ensembles:
            verdicts["ensemble_topics90"] = verdict(
                summary, "topics90", pick(summary, "topics90", list(ensembles)), ENSEMBLE_TARGET
            )
        # The rule binds the defaults; a candidate that fails it stays out of params.yaml.
        defaults = {r["model"]: r["earns_its_place"] for r in ablation if r["model"] in models}
        verdicts["every_default_ahead_of_its_skip_only_twin"] = {
            "models": defaults,
            "met": all(defaults.values()),
        }
        verdicts["candidates_that_may_join_the_defaults"] = {
            "models": {
                r["model"]: r["earns_its_place"] for r in ablation if r["model"] not in models
            },
            "met": None,
        }
    for key, v in verdicts.items():
        if "value" in v:
            shown = "–" if v["value"] is None else f"{v['value']:.4f} ± {v['sd']:.4f}"
            print(
                f"{key}: {v['model']} {shown} (target {v['target']}: "
                f"{'met' if v['met'] else 'NOT met'})"
            )
        elif v["met"] is None:
            print(f"{key}: {v['models']}")
        else:
            print(f"{key}: {'met' if v['met'] else 'NOT met'} {v['models']}")
    # Per model (90 topics, mean over seeds): the share of documents without evidence
    # that still got a topic; the decision rule should keep every one at 0.
    no_evidence = {
        model: entry["no_evidence_topic_share"][0]
        for model, entry in summary.get("topics90", {}).items()
        if "no_evidence_topic_share" in entry
    }
    if no_evidence:
        print("no-evidence documents that got a topic:", no_evidence)
    total = round(time.perf_counter() - started, 1)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    plot(summary, rows, tasks, out.with_suffix(".png"))
    result = {
        "overrides": overrides,
        "seeds": seeds,
        "tasks": tasks,
        "complete": tasks == all_tasks,
        "models": models,
        "twins": twins,
        "generated_twins": generated,
        "candidates": [n for n in configs if n not in models and n not in generated],
        "ensembles": ensembles,
        "summary": summary,
        "verdicts": verdicts,
        "ablation": ablation,
        "published": PUBLISHED,
        "behavioural": checks,
        "no_evidence_topic_share": no_evidence,
        "runs": clean,
        "baselines": baselines,
        "table_markdown": table,
        "twins_markdown": twins_table,
        "total_seconds": total,
    }
    out.write_text(json.dumps(result, indent=2) + "\n")
    return result


def merge(parts: list[Path], out: Path) -> int:
    """One result from parts measured one model set at a time on the same params, tasks and
    seeds (``--models lstm,boe``, then ``--models rnn``): their runs and baselines summarised
    as if measured together. Every part's training is deterministic, so the runs are what one
    run would have measured; only ``total_seconds`` adds up the parts' times."""
    loaded = [json.loads(Path(p).read_text()) for p in parts]
    first = loaded[0]
    for part in loaded[1:]:
        for key in ("seeds", "tasks", "overrides"):
            if part[key] != first[key]:
                raise SystemExit(f"the parts differ in {key}: merge parts of one measurement only")
    if any(part["candidates"] or part["generated_twins"] for part in loaded):
        raise SystemExit("merge parts measured with --candidates '' and no generated twins")
    overrides = first["overrides"]
    raw = apply_overrides(yaml.safe_load((ROOT / "params.yaml").read_text()), overrides)
    params = parse_params(raw, "params.yaml")
    models = [m for m in params.models if any(m in part["models"] for part in loaded)]
    ensembles = {k: v for part in loaded for k, v in part["ensembles"].items()}
    runs = [r for part in loaded for r in part["runs"]]
    seeds = first["seeds"]
    # The behavioural checks belong to the 90-topic model validation picks among all parts.
    first_seed = [r for r in runs if r["task"] == "topics90" and r["seed"] == seeds[0]]
    chosen = max(first_seed, key=lambda r: r["val_micro_f1"])["model"] if first_seed else None
    checks = next((p["behavioural"] for p in loaded if p["behavioural"].get("model") == chosen), {})
    if chosen and not checks:
        print(
            f"validation picks {chosen}; rerun its checks: python bench/quality.py --behavioural-only"
        )
    started = time.perf_counter() - sum(part["total_seconds"] for part in loaded)
    write_results(
        out,
        first["tasks"],
        first["tasks"],
        runs,
        first["baselines"],
        checks,
        {m: params.models[m] for m in models},
        {k: v for part in loaded for k, v in part["twins"].items()},
        [],
        models,
        ensembles,
        overrides,
        seeds,
        started,
    )
    print(f"wrote {out} from {len(parts)} parts")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", default="42,43,44", help="comma-separated model seeds")
    parser.add_argument("--tasks", default=",".join(TASKS), help=f"subset of {','.join(TASKS)}")
    parser.add_argument("--models", default=None, help="subset of params.yaml models")
    parser.add_argument(
        "--candidates",
        default=str(ROOT / "bench/candidates.yaml"),
        help="YAML of candidate models trained beside the defaults ('' for none)",
    )
    parser.add_argument(
        "--candidate-tasks",
        default="topics90",
        help="tasks the candidates (and twins generated for them) are trained on; the rule "
        "for joining the defaults is defined on the 90 topics",
    )
    parser.add_argument(
        "--no-twins",
        action="store_true",
        help="train no ablation twin that params.yaml does not define (faster; the ablation "
        "table then shows only the twins the params have)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="params override (YAML value), e.g. models.lstm.epochs=2",
    )
    parser.add_argument("--out", default=str(ROOT / "bench/results/quality.json"))
    parser.add_argument(
        "--behavioural-only",
        action="store_true",
        help="rerun only the behavioural checks on the model and seed --out records "
        "(training is deterministic: the same weights) and update that section",
    )
    parser.add_argument(
        "--merge",
        nargs="+",
        type=Path,
        metavar="PART",
        help="write --out from quality results measured in parts (one model set each)",
    )
    args = parser.parse_args()
    if args.merge:
        return merge(args.merge, Path(args.out))
    if args.behavioural_only:
        return behavioural_only(Path(args.out))
    logging.basicConfig(level=logging.WARNING)

    overrides = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)}
    raw = apply_overrides(yaml.safe_load((ROOT / "params.yaml").read_text()), overrides)
    params = parse_params(raw, "params.yaml")
    seeds = [int(s) for s in args.seeds.split(",")]
    tasks = args.tasks.split(",")
    unknown = set(tasks) - set(TASKS)
    if unknown:
        parser.error(f"unknown task(s) {sorted(unknown)}; choose from {', '.join(TASKS)}")
    models = args.models.split(",") if args.models else list(params.models)
    missing = set(models) - set(params.models)
    if missing:
        parser.error(f"model(s) {sorted(missing)} not in params.yaml; have {list(params.models)}")
    ensembles = {
        name: e.members for name, e in params.ensembles.items() if set(e.members) <= set(models)
    }
    candidates = load_candidates(Path(args.candidates) if args.candidates else None, params)
    configs, twins = with_twins(params, models, candidates)
    if args.no_twins:
        configs = {n: c for n, c in configs.items() if n in models or n in candidates}
        twins = {
            n: {role: t if t in configs else None for role, t in r.items()}
            for n, r in twins.items()
        }
    generated = [n for n in configs if n not in models and n not in candidates]

    from rnnops.stages.ingest import run_ingest
    from rnnops.stages.preprocess import run_preprocess
    from rnnops.stages.pretrain import run_pretrain

    runs, baselines, started = [], [], time.perf_counter()
    best_rows, checks, done = {}, {}, []
    with tempfile.TemporaryDirectory(prefix="rnnops-quality-") as tmp:
        tmp = Path(tmp)
        raw_path = tmp / "reuters.parquet"
        run_ingest(params.ingest, raw_path, ROOT)
        for task in tasks:
            data_dir = tmp / task / "data"
            pre = params.preprocess.model_copy(update=TASKS[task])
            info = run_preprocess(pre, raw_path, data_dir)
            run_pretrain(params.pretrain, data_dir, data_dir / "pretrained")
            print(f"\n== {task}: {info.labels} labels, splits {info.splits}", flush=True)
            for base in (tfidf_svm(raw_path, data_dir), majority_class(data_dir)):
                baselines.append({"task": task, **base})
                print(f"  {base['model']:<18} {HEADLINE[task]}={base[HEADLINE[task]]:.4f}")
            for seed in seeds:
                work = tmp / task / f"seed{seed}"
                for name in [*configs, *ensembles]:
                    extra = name not in models and name not in ensembles
                    if extra and task not in args.candidate_tasks.split(","):
                        continue
                    if name in ensembles:
                        row = ensemble_and_evaluate(
                            name, ensembles[name], params.evaluate, data_dir, work
                        )
                        how = f"mean of {'+'.join(ensembles[name])}"
                    else:
                        cfg = seeded(configs[name], seed)
                        row = train_and_evaluate(name, cfg, params.evaluate, data_dir, work)
                        how = f"{row['epochs']} epochs {row['train_seconds']:.0f}s"
                    row.update(task=task, model=name, seed=seed)
                    if task == "topics90":
                        row["no_evidence_topic_share"] = no_evidence_share(row, data_dir)
                    runs.append(row)
                    print(
                        f"  {name:<18} seed {seed}: {HEADLINE[task]}={row[HEADLINE[task]]:.4f} "
                        f"macro-F1={row['macro_f1']:.4f} (validation "
                        f"{row['val_' + HEADLINE[task]]:.4f}) {how}"
                        + (
                            f"; no-evidence documents with a topic "
                            f"{row['no_evidence_topic_share']:.0%}"
                            if "no_evidence_topic_share" in row
                            else ""
                        ),
                        flush=True,
                    )
                    if task == "topics90" and seed == seeds[0]:
                        best_rows[name] = row
            if task == "topics90" and best_rows:
                # Validation picks the model the behavioural checks run on.
                candidates = [*models, *ensembles]
                chosen = max(candidates, key=lambda n: best_rows[n]["val_micro_f1"])
                print(f"  behavioural checks on {chosen} (seed {seeds[0]}):")
                checks = {
                    "model": chosen,
                    "seed": seeds[0],
                    "results": behavioural(best_rows[chosen], data_dir, raw_path),
                }
            done.append(task)
            result = write_results(
                Path(args.out),
                done,
                tasks,
                runs,
                baselines,
                checks,
                configs,
                twins,
                generated,
                models,
                ensembles,
                overrides,
                seeds,
                started,
            )
    total, out = result["total_seconds"], Path(args.out)
    print(f"\nwrote {out} and {out.with_suffix('.png')} in {total / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
