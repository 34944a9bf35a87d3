"""Benchmark: training speed and memory, the train stage against a bare Keras loop.

1. Runs the default pipeline (`dvc repro`, stage by stage) in a fresh copy of the
   project: wall time and peak memory per stage.
2. On that run's processed data, for every model: the train stage as DVC runs it
   (`rnnops train NAME`, with its MLflow run, callbacks and atomic writes) against a
   bare Keras loop of the identical model (`rnnops.stages.train.new_model`, then
   `model.fit` on the same arrays, with the same class weights (when the model has
   them), batch size and validation data, no tracking and no callbacks), both for the
   same number of epochs with early stopping and refit off, `--repeats` rounds.

   In each round the two run side by side and take turns, one epoch each (see
   bench/pace.py), the bare loop first in odd rounds and the stage first in even
   ones: every epoch of one side runs right beside an epoch of the other, so a slow
   stretch of the shared machine hits both. Each epoch is timed from its start to the
   next one's, so the stage's end-of-epoch work (progress, MLflow metrics, early-
   stopping checks) is inside it.

   Throughput is training documents / seconds of the fastest steady epoch (every epoch
   but each fit's first, which also traces the functions) over all of a side's
   rounds; the stage must reach ≥ 0.95× the bare loop. The fastest, because on this
   2-core VM an epoch can take two to five times as long as the one before, with the
   same CPU time and the cores partly idle, in either side; such a delay only ever
   adds. Reported beside it: the median ratio of the epoch pairs that
   ran back to back, the ratio of the sides' total epoch times, and `cpu_ratio`, the
   median pair ratio of CPU time (the process's, every thread's), which extra work
   the stage did during training, in any thread, would lower.

Writes bench/results/speed.json.

    NLTK_DATA=/path/to/nltk_data python bench/speed.py [--epochs 4] [--repeats 6]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from pace import ENV as PACE_ENV  # noqa: E402
from pace import Channel, PipeClosed, take_turns  # noqa: E402
from pipeline import make_copy, run_stages  # noqa: E402

TARGET_RATIO = 0.95


def bare_loop(data_dir: str, model_json: str) -> None:
    """Child process: the identical model trained by a bare, paced `model.fit`."""
    from pace import channel_from_env, install
    from rnnops.core.config import ModelConfig
    from rnnops.core.io import read_json
    from rnnops.stages.preprocess import load_dataset
    from rnnops.stages.train import fit_weights, initial_embeddings, new_model, seed_everything

    install(channel_from_env())
    cfg = ModelConfig(**json.loads(model_json))
    labels = read_json(Path(data_dir) / "labels.json")
    vocab = read_json(Path(data_dir) / "vocab.json")
    train, val = load_dataset(data_dir, "train"), load_dataset(data_dir, "val")
    seed_everything(cfg.seed)
    embeddings = initial_embeddings(cfg, Path(data_dir).parent / "pretrained", len(vocab["tokens"]))
    model = new_model(
        cfg, train, labels["task"], len(vocab["tokens"]), len(labels["labels"]), embeddings
    )
    weights = fit_weights(cfg, train.y, len(labels["labels"]), labels["task"])
    model.fit(
        train.x,
        train.y,
        sample_weight=weights,
        validation_data=(val.x, val.y),
        batch_size=cfg.batch_size,
        epochs=cfg.epochs,
        shuffle=True,
        verbose=0,
    )
    print(json.dumps({"documents": len(train.y)}))


def paced_pair(sides: dict[str, list[str]], cwd: Path, env: dict, logs: Path) -> dict[str, dict]:
    """Start both sides' processes and run their epochs in turns (see bench/pace.py).

    Returns, per side, the epoch times from its pace, its stdout and its peak memory.
    """
    procs, channels = {}, []
    try:
        for name, cmd in sides.items():
            to_child, to_driver = os.pipe(), os.pipe()
            child_fds = (to_child[0], to_driver[1])
            with open(logs / f"{name}.out", "w") as out, open(logs / f"{name}.err", "w") as err:
                procs[name] = subprocess.Popen(
                    cmd,
                    cwd=cwd,
                    env={**env, PACE_ENV: f"{child_fds[0]},{child_fds[1]}"},
                    stdout=out,
                    stderr=err,
                    pass_fds=child_fds,
                )
            for fd in child_fds:
                os.close(fd)
            channels.append(Channel(to_driver[0], to_child[1], name))
        try:
            times = dict(zip(sides, take_turns(channels), strict=True))
        except PipeClosed as e:
            raise RuntimeError(f"{e}: {_failure(procs, logs, e.name)}") from None
        results = {}
        for name, proc in procs.items():
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            if proc.returncode:
                raise RuntimeError(f"{name} failed: {_failure(procs, logs, name)}")
            results[name] = {
                **times[name],
                "stdout": (logs / f"{name}.out").read_text(),
                "peak_mib": usage.ru_maxrss / 1024,
            }
        return results
    finally:
        for channel in channels:
            channel.close()
        for proc in procs.values():
            if proc.returncode is None:
                proc.kill()
                proc.wait()


def _failure(procs: dict, logs: Path, failed: str) -> str:
    """The failed side's exit status and the end of its stderr; the other side is stopped."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        procs[failed].wait(timeout=30)
    for proc in procs.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = (logs / f"{failed}.err").read_text()[-3000:]
    return f"--- {failed} (exit {procs[failed].returncode}):\n{stderr}"


def compare_model(name: str, cfg, project: Path, env: dict, epochs: int, repeats: int) -> dict:
    # The fit loop is what is compared: no early stopping, and no refit after it.
    fixed = {"epochs": epochs, "early_stopping_patience": 0, "refit_epochs": 0}
    model_cfg = cfg.model_copy(update=fixed)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["models"][name].update(fixed)
    bench_params = project / "params.speed.yaml"
    bench_params.write_text(yaml.safe_dump(params, sort_keys=False))
    bare_cmd = [
        sys.executable,
        __file__,
        "--bare-loop",
        "data/processed",
        model_cfg.model_dump_json(),
    ]
    runs = {"stage": [], "bare": []}
    for i in range(repeats):
        out_dir = project / f".speed/{name}{i}"
        out_dir.mkdir(parents=True, exist_ok=True)
        stage_cmd = [
            sys.executable,
            str(ROOT / "bench/pace.py"),
            "--params",
            str(bench_params),
            "train",
            name,
            "--data",
            "data/processed",
            "--pretrained",
            "data/pretrained",
            "--out",
            str(out_dir / "train"),
        ]
        # Bare first in even rounds, the stage first in odd ones: neither side always
        # runs its epoch right after the other's.
        order = ["bare", "stage"] if i % 2 == 0 else ["stage", "bare"]
        cmds = {"bare": bare_cmd, "stage": stage_cmd}
        result = paced_pair({k: cmds[k] for k in order}, project, env, out_dir)
        summary = json.loads((out_dir / "train/train.json").read_text())
        bare_docs = json.loads(result["bare"]["stdout"].strip().splitlines()[-1])["documents"]
        if bare_docs != summary["train_documents"] or any(
            len(result[k]["seconds"]) != epochs for k in runs
        ):
            raise RuntimeError(
                f"{name}: the two sides did not train the same epochs on the same data"
            )
        for kind in runs:
            runs[kind].append(
                {
                    "epoch_seconds": [round(e, 4) for e in result[kind]["seconds"]],
                    "epoch_cpu_seconds": [round(e, 4) for e in result[kind]["cpu_seconds"]],
                    "callback_seconds": [round(e, 4) for e in result[kind]["callback_seconds"]],
                    "peak_mib": result[kind]["peak_mib"],
                }
            )
        print(
            f"  {name} round {i + 1} ({' first, '.join(order)} second): "
            + "; ".join(
                f"{kind} epochs "
                + " ".join(f"{e:.2f}" for e in runs[kind][-1]["epoch_seconds"])
                + " (callbacks "
                + " ".join(f"{e:.3f}" for e in runs[kind][-1]["callback_seconds"])
                + ")"
                for kind in ("bare", "stage")
            ),
            flush=True,
        )

    def steady(kind: str, key: str) -> np.ndarray:
        return np.array([e for r in runs[kind] for e in r[key][1:]])

    def rounded(x) -> float:
        return round(float(x), 3)

    docs = summary["train_documents"]
    fastest = {k: steady(k, "epoch_seconds").min() for k in runs}
    # Steady epoch k of one side ran right beside epoch k of the other.
    pair_ratio = steady("bare", "epoch_seconds") / steady("stage", "epoch_seconds")
    cpu_pair_ratio = steady("bare", "epoch_cpu_seconds") / steady("stage", "epoch_cpu_seconds")
    total = {k: sum(sum(r["epoch_seconds"]) for r in runs[k]) for k in runs}
    return {
        "epochs": epochs,
        "repeats": repeats,
        "train_documents": docs,
        "bare_docs_per_second": round(docs / fastest["bare"], 1),
        "stage_docs_per_second": round(docs / fastest["stage"], 1),
        "throughput_ratio": rounded(fastest["bare"] / fastest["stage"]),
        "bare_seconds_per_epoch": rounded(fastest["bare"]),
        "stage_seconds_per_epoch": rounded(fastest["stage"]),
        "pair_ratio_median": rounded(np.median(pair_ratio)),
        "pair_ratio_quartiles": [rounded(q) for q in np.quantile(pair_ratio, [0.25, 0.75])],
        "total_ratio": rounded(total["bare"] / total["stage"]),
        "bare_cpu_seconds_per_epoch": rounded(np.median(steady("bare", "epoch_cpu_seconds"))),
        "stage_cpu_seconds_per_epoch": rounded(np.median(steady("stage", "epoch_cpu_seconds"))),
        "cpu_ratio": rounded(np.median(cpu_pair_ratio)),
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
        "--epochs", type=int, default=4, help="epochs per timed training (at least 2)"
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=6,
        help="paced rounds per model: each side gets repeats × (epochs - 1) steady "
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

    from rnnops.core.config import load_params

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

    worst = min(c["throughput_ratio"] for c in comparisons.values())
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
    print("\n| stage | seconds | peak MiB |\n|---|---|---|")
    for stage, seconds in stages.items():
        print(f"| {stage} | {seconds:.1f} | {peaks[stage]:.0f} |")
    print(f"| **whole pipeline** | **{total:.1f}** ({total / 60:.1f} min) | |")
    print(
        "\n| model | bare docs/s | stage docs/s | ratio | s/epoch bare | s/epoch stage | "
        "pair ratio (median) | total ratio | CPU s/epoch bare | CPU s/epoch stage | "
        "CPU ratio | peak MiB bare | peak MiB stage |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    for name, c in comparisons.items():
        print(
            f"| {name} | {c['bare_docs_per_second']:.0f} | {c['stage_docs_per_second']:.0f} | "
            f"{c['throughput_ratio']:.3f} | {c['bare_seconds_per_epoch']:.2f} | "
            f"{c['stage_seconds_per_epoch']:.2f} | {c['pair_ratio_median']:.3f} | "
            f"{c['total_ratio']:.3f} | "
            f"{c['bare_cpu_seconds_per_epoch']:.2f} | {c['stage_cpu_seconds_per_epoch']:.2f} | "
            f"{c['cpu_ratio']:.3f} | {c['bare_peak_mib']:.0f} | "
            f"{c['stage_peak_mib']:.0f} |"
        )
    print(
        f"\nlowest stage/bare throughput ratio {worst:.3f} (target ≥ {TARGET_RATIO}: "
        f"{'met' if worst >= TARGET_RATIO else 'NOT met'}); whole pipeline "
        f"{total / 60:.1f} min (target ≤ 10: {'met' if total <= 600 else 'NOT met'})"
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
