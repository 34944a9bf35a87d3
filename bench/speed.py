"""Benchmark: training speed and memory, the train stage against a bare Keras loop.

1. Runs the default pipeline (`dvc repro`, stage by stage) in a fresh copy of the
   project: wall time and peak memory per stage.
2. On that run's processed data, for every model: the train stage as DVC runs it
   (`rnnops train NAME`, with its MLflow run, callbacks and atomic writes) against a
   bare Keras loop of the identical model (`build_model` + `compile_model`, then
   `model.fit` on the same arrays, with the same class weights (when the model has
   them), batch size and validation data, no tracking and no callback but the clock
   the stage also uses), both for the same number of epochs with early stopping and
   refit off, alternating (bare then stage, stage then bare, ...), `--repeats` times
   each. Each epoch is timed from its start to the next one's, so the stage's
   end-of-epoch work (progress, MLflow metrics, early-stopping checks) is inside it.

   Throughput is training documents / seconds of the fastest steady epoch (every
   epoch but each fit's first, which also traces the functions) over all of a side's
   runs; the stage must reach ≥ 0.95× the bare loop. The fastest, not the mean: on a
   shared 2-core machine some epochs take 20-80 % longer than others of the same fit,
   in either side's runs (some with the same CPU time while the cores show idle, some
   with more), and such a delay only ever adds. Whole `fit` times (best of each side)
   are reported beside it as `fit_ratio`, and so is `cpu_ratio`: the median CPU time (the process's,
   every thread's) of a steady epoch, bare over stage, which extra work the stage did
   during training, in any thread, would lower. It varies too: in slow periods the
   threads that wait on each other also spend more CPU time.

Writes bench/results/speed.json.

    NLTK_DATA=/path/to/nltk_data python bench/speed.py [--epochs 6] [--repeats 4]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from pipeline import make_copy, run_stages  # noqa: E402

TARGET_RATIO = 0.95


def bare_loop(data_dir: str, model_json: str) -> None:
    """Child process: the identical model trained by a bare `model.fit`; prints JSON."""
    import resource

    from rnnops.config import ModelConfig
    from rnnops.io import read_json
    from rnnops.models import build_model, compile_model
    from rnnops.preprocess import load_dataset
    from rnnops.train import epoch_clock, fit_weights, seed_everything

    cfg = ModelConfig(**json.loads(model_json))
    labels = read_json(Path(data_dir) / "labels.json")
    vocab = read_json(Path(data_dir) / "vocab.json")
    train, val = load_dataset(data_dir, "train"), load_dataset(data_dir, "val")
    seed_everything(cfg.seed)
    model = build_model(
        cfg, len(vocab["tokens"]), len(labels["labels"]), train.x.shape[1], labels["task"]
    )
    compile_model(model, cfg, labels["task"])
    weights = fit_weights(cfg, train.y, len(labels["labels"]), labels["task"])
    clock = epoch_clock()
    start = time.perf_counter()
    model.fit(
        train.x,
        train.y,
        sample_weight=weights,
        validation_data=(val.x, val.y),
        batch_size=cfg.batch_size,
        epochs=cfg.epochs,
        shuffle=True,
        verbose=0,
        callbacks=[clock],
    )
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "fit_seconds": seconds,
                "epoch_seconds": clock.seconds,
                "epoch_cpu_seconds": clock.cpu_seconds,
                "documents": len(train.y),
                "peak_mib": peak,
            }
        )
    )


def run_child(cmd: list[str], cwd: Path, env: dict) -> tuple[str, float, float]:
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    out, err = proc.stdout.read(), proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code:
        raise RuntimeError(f"{' '.join(cmd)} failed ({code}):\n{err[-3000:]}")
    return out, wall, usage.ru_maxrss / 1024


def compare_model(name: str, cfg, project: Path, env: dict, epochs: int, repeats: int) -> dict:
    # The fit loop is what is compared: no early stopping, and no refit after it.
    fixed = {"epochs": epochs, "early_stopping_patience": 0, "refit_epochs": 0}
    model_cfg = cfg.model_copy(update=fixed)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["models"][name].update(fixed)
    bench_params = project / "params.speed.yaml"
    bench_params.write_text(yaml.safe_dump(params, sort_keys=False))
    runs = {"stage": [], "bare": []}

    def run_bare() -> None:
        out, wall, peak = run_child(
            [
                sys.executable,
                __file__,
                "--bare-loop",
                "data/processed",
                model_cfg.model_dump_json(),
            ],
            project,
            env,
        )
        bare = json.loads(out.strip().splitlines()[-1])
        runs["bare"].append(
            {
                "fit_seconds": bare["fit_seconds"],
                "epoch_seconds": [round(e, 4) for e in bare["epoch_seconds"]],
                "epoch_cpu_seconds": [round(e, 4) for e in bare["epoch_cpu_seconds"]],
                "process_seconds": wall,
                "peak_mib": peak,
                "documents": bare["documents"],
            }
        )

    def run_stage(i: int) -> None:
        out_dir = project / f".speed/{name}{i}"
        _, wall, peak = run_child(
            [
                str(BIN / "rnnops"),
                "--params",
                str(bench_params),
                "train",
                name,
                "--data",
                "data/processed",
                "--out",
                str(out_dir),
            ],
            project,
            env,
        )
        summary = json.loads((out_dir / "train.json").read_text())
        with open(out_dir / "history.csv", newline="") as f:
            history = list(csv.DictReader(f))
        runs["stage"].append(
            {
                "fit_seconds": summary["train_seconds"],
                "epoch_seconds": [float(row["seconds"]) for row in history],
                "epoch_cpu_seconds": [float(row["cpu_seconds"]) for row in history],
                "process_seconds": wall,
                "peak_mib": peak,
                "documents": summary["train_documents"],
            }
        )

    for i in range(repeats):
        # Bare first in even rounds, the stage first in odd ones (ABBA...): a machine
        # that speeds up or slows down during the comparison favours neither side.
        if i % 2 == 0:
            run_bare()
            run_stage(i)
        else:
            run_stage(i)
            run_bare()
        print(
            f"  {name} round {i + 1}: "
            + ", ".join(
                f"{kind} fit {runs[kind][-1]['fit_seconds']:.1f}s (epochs "
                + " ".join(f"{e:.2f}" for e in runs[kind][-1]["epoch_seconds"])
                + ")"
                for kind in ("bare", "stage")
            ),
            flush=True,
        )

    def best(kind: str, key: str) -> float:
        return min(r[key] for r in runs[kind])

    def steady_epoch(kind: str) -> float:
        return min(e for r in runs[kind] for e in r["epoch_seconds"][1:])

    def steady_cpu(kind: str) -> float:
        return float(np.median([e for r in runs[kind] for e in r["epoch_cpu_seconds"][1:]]))

    docs = runs["stage"][0]["documents"]
    throughput = {k: docs / steady_epoch(k) for k in runs}
    return {
        "epochs": epochs,
        "repeats": repeats,
        "train_documents": docs,
        "bare_docs_per_second": round(throughput["bare"], 1),
        "stage_docs_per_second": round(throughput["stage"], 1),
        "throughput_ratio": round(throughput["stage"] / throughput["bare"], 3),
        "bare_seconds_per_epoch": round(steady_epoch("bare"), 3),
        "stage_seconds_per_epoch": round(steady_epoch("stage"), 3),
        "bare_fit_seconds": round(best("bare", "fit_seconds"), 2),
        "stage_fit_seconds": round(best("stage", "fit_seconds"), 2),
        "fit_ratio": round(best("bare", "fit_seconds") / best("stage", "fit_seconds"), 3),
        "bare_cpu_seconds_per_epoch": round(steady_cpu("bare"), 3),
        "stage_cpu_seconds_per_epoch": round(steady_cpu("stage"), 3),
        "cpu_ratio": round(steady_cpu("bare") / steady_cpu("stage"), 3),
        "bare_process_seconds": round(best("bare", "process_seconds"), 1),
        "stage_process_seconds": round(best("stage", "process_seconds"), 1),
        "bare_peak_mib": round(max(r["peak_mib"] for r in runs["bare"]), 1),
        "stage_peak_mib": round(max(r["peak_mib"] for r in runs["stage"]), 1),
        "runs": runs,
    }


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--bare-loop":
        bare_loop(sys.argv[2], sys.argv[3])
        return 0
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--epochs", type=int, default=6, help="epochs per timed training (at least 2)"
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=4,
        help="alternating rounds per model: each side gets repeats × (epochs - 1) steady "
        "epochs to take the fastest of",
    )
    parser.add_argument("--models", default=None, help="subset of params.yaml models")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="params override (YAML value), e.g. models.lstm.units=32",
    )
    parser.add_argument("--out", default=str(ROOT / "bench/results/speed.json"))
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: the first epoch of a fit is not timed")
    overrides = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)}

    from rnnops.config import load_params

    with tempfile.TemporaryDirectory(prefix="rnnops-speed-") as tmp:
        project, env = make_copy(Path(tmp) / "project", overrides)
        print("default pipeline, stage by stage:", flush=True)
        stages, total, peaks = run_stages(project, env)
        if stages is None:
            return 1
        print(f"whole pipeline: {total:.1f} s ({total / 60:.1f} min)\n", flush=True)
        params = load_params(project / "params.yaml")
        names = args.models.split(",") if args.models else list(params.models)
        per_epoch = {}
        for name in names:
            info = json.loads((project / "models" / name / "train.json").read_text())
            per_epoch[name] = {
                "seconds_per_epoch": info["seconds_per_epoch"],
                "epochs_run": info["epochs_run"],
                "train_seconds": info["train_seconds"],
            }
        print(
            f"train stage vs bare Keras loop ({args.epochs} epochs, early stopping and refit off):"
        )
        comparisons = {
            name: compare_model(name, params.models[name], project, env, args.epochs, args.repeats)
            for name in names
        }

    print("\n| stage | seconds | peak MiB |\n|---|---|---|")
    for stage, seconds in stages.items():
        print(f"| {stage} | {seconds:.1f} | {peaks[stage]:.0f} |")
    print(f"| **whole pipeline** | **{total:.1f}** ({total / 60:.1f} min) | |")
    print(
        "\n| model | bare docs/s | stage docs/s | ratio | s/epoch bare | s/epoch stage | "
        "fit s bare | fit s stage | fit ratio | CPU s/epoch bare | CPU s/epoch stage | "
        "CPU ratio | peak MiB bare | peak MiB stage |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    for name, c in comparisons.items():
        print(
            f"| {name} | {c['bare_docs_per_second']:.0f} | {c['stage_docs_per_second']:.0f} | "
            f"{c['throughput_ratio']:.3f} | {c['bare_seconds_per_epoch']:.2f} | "
            f"{c['stage_seconds_per_epoch']:.2f} | {c['bare_fit_seconds']:.1f} | "
            f"{c['stage_fit_seconds']:.1f} | {c['fit_ratio']:.3f} | "
            f"{c['bare_cpu_seconds_per_epoch']:.2f} | {c['stage_cpu_seconds_per_epoch']:.2f} | "
            f"{c['cpu_ratio']:.3f} | {c['bare_peak_mib']:.0f} | "
            f"{c['stage_peak_mib']:.0f} |"
        )
    worst = min(c["throughput_ratio"] for c in comparisons.values())
    print(
        f"\nlowest stage/bare throughput ratio {worst:.3f} (target ≥ {TARGET_RATIO}: "
        f"{'met' if worst >= TARGET_RATIO else 'NOT met'}); whole pipeline "
        f"{total / 60:.1f} min (target ≤ 10: {'met' if total <= 600 else 'NOT met'})"
    )
    result = {
        "overrides": overrides,
        "stage_seconds": stages,
        "stage_peak_mib": peaks,
        "total_seconds": total,
        "per_epoch": per_epoch,
        "train_vs_bare": comparisons,
        "lowest_throughput_ratio": worst,
        "targets": {"throughput_ratio": TARGET_RATIO, "pipeline_seconds": 600},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
