"""``rnnops`` command line: one subcommand per pipeline stage (what dvc.yaml calls)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from rnnops.core.config import ConfigError, Params, load_params
from rnnops.core.contract import KIND_TAG, MODEL_TAG, STAGE_TAG

log = logging.getLogger("rnnops")


def _invalid_input_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean the input is wrong: retrying cannot help (exit status 2)."""
    from rnnops.stages.corpus import CorpusNotFoundError, CorpusValidationError
    from rnnops.stages.ensemble import EnsembleError
    from rnnops.stages.evaluate import EvaluationError
    from rnnops.stages.preprocess import LabelSelectionError
    from rnnops.stages.pretrain import PretrainedEmbeddingsError
    from rnnops.stages.promote import PromotionError
    from rnnops.stages.train import NonFiniteLossError
    from rnnops.systems.store_check import NoStoreError, NotAStoreError

    return (
        ConfigError,
        CorpusNotFoundError,
        CorpusValidationError,
        LabelSelectionError,
        NonFiniteLossError,
        EvaluationError,
        EnsembleError,
        PromotionError,
        PretrainedEmbeddingsError,
        NotAStoreError,
        NoStoreError,
    )


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


# What the check_params stage writes when every section is valid. Always the same bytes:
# the stages after it depend on this file, and a constant hash reruns none of them.
PARAMS_CHECKED = {"params": "valid"}


def cmd_check_params(args: argparse.Namespace, params: Params) -> None:
    from rnnops.core.io import write_json

    # main() has already loaded and validated every section before calling this.
    write_json(args.out, PARAMS_CHECKED)
    log.info("check-params: %s is valid -> %s", args.params, args.out)


def params_restore_hint(path: str) -> str:
    """How to get a valid parameter file back; ``dvc exp run -S`` writes its values into it."""
    return (
        f"{path} now holds that value if `dvc exp run -S` or `dvc exp apply` wrote it: fix "
        f"the value, or see the change with `git diff {path}` and restore the committed "
        f"file with `git checkout -- {path}`."
    )


def cmd_ingest(args: argparse.Namespace, params: Params) -> None:
    from rnnops.stages.ingest import run_ingest

    result = run_ingest(params.ingest, args.out)
    log.info(
        "ingest: %d documents (%d train, %d test), %d topics, %d empty dropped -> %s",
        result.documents,
        result.train,
        result.test,
        result.topics,
        result.dropped_empty,
        args.out,
    )


def cmd_preprocess(args: argparse.Namespace, params: Params) -> None:
    from rnnops.stages.preprocess import run_preprocess

    result = run_preprocess(params.preprocess, args.input, args.out)
    log.info(
        "preprocess: %s documents, %d labels, vocabulary %d -> %s",
        result.splits,
        result.labels,
        result.vocab_size,
        args.out,
    )


def cmd_pretrain(args: argparse.Namespace, params: Params) -> None:
    from rnnops.stages.pretrain import run_pretrain

    summary = run_pretrain(params.pretrain, args.data, args.out)
    log.info(
        "pretrain: word2vec, %d dimensions, %d of %d vocabulary ids from %d training "
        "documents in %.1fs -> %s",
        summary.dim,
        summary.covered_tokens,
        summary.vocab_size,
        summary.training_documents,
        summary.seconds,
        args.out,
    )


def _candidate_kind(params: Params, name: str) -> str:
    """The kind of a model or ensemble; refuse names params.yaml does not define."""
    if name not in params.models and name not in params.ensembles:
        raise ConfigError(
            f"{name!r} is defined neither under models: nor under ensembles: in params.yaml "
            f"(defined: {', '.join(params.candidates)})"
        )
    return params.kind(name)


def _model_cfg(params: Params, name: str):
    if name not in params.models:
        raise ConfigError(
            f"model {name!r} is not defined under models: in params.yaml "
            f"(defined: {', '.join(params.models)})"
        )
    return params.models[name]


def _start_tracking(params: Params, data_dir: str) -> tuple[object, dict[str, str], str | None]:
    from rnnops.systems import tracking

    uri = tracking.configure(params.tracking.uri, params.tracking.experiment)
    log.info("MLflow tracking at %s, experiment %s", uri, params.tracking.experiment)
    data_hash = tracking.dvc_locked_hash("preprocess", Path(data_dir).as_posix())
    return tracking, tracking.lineage_tags(data_hash), data_hash


def cmd_train(args: argparse.Namespace, params: Params) -> None:
    from rnnops.core.io import remove_on_failure
    from rnnops.stages.train import TRAIN_OUTPUTS, run_train

    cfg = _model_cfg(params, args.model)
    if cfg.embedding_init == "word2vec" and args.pretrained is None:
        # Refused before an MLflow run starts: a usage error is not a failed training.
        raise ConfigError(
            f"models.{args.model}.embedding_init is word2vec: pass --pretrained "
            "data/pretrained (the pretrain stage's output; dvc repro pretrain)"
        )
    tracking, tags, data_hash = _start_tracking(params, args.data)
    tags.update({MODEL_TAG: args.model, KIND_TAG: cfg.kind, STAGE_TAG: "train"})
    data_dir, out = Path(args.data), Path(args.out)
    with tracking.stage_run(
        run_name=args.model, tags=tags, execution=tracking.execution_key(f"train@{args.model}")
    ) as run:
        pretrain = (
            params.pretrain.model_dump(mode="json") if cfg.embedding_init == "word2vec" else None
        )
        tracking.record_training_inputs(
            args.model, cfg.model_dump(mode="json"), pretrain, data_dir, data_hash
        )
        with remove_on_failure(*(out / item for item in TRAIN_OUTPUTS)):
            summary = run_train(
                args.model,
                cfg,
                data_dir,
                out,
                callbacks=[tracking.epoch_logger()],
                run_id=run.info.run_id,
                pretrained_dir=args.pretrained,
            )
            tracking.record_training_outputs(summary, out, data_dir)
    log.info(
        "train@%s: %d epochs%s in %.1fs (best epoch %d, val_loss %.4f, %d parameters) -> %s",
        args.model,
        summary.epochs_run,
        f" + {summary.refit_epochs} refit" if summary.refit_epochs else "",
        summary.train_seconds,
        summary.best_epoch,
        summary.best_val_loss,
        summary.trainable_params,
        args.out,
    )


def cmd_ensemble(args: argparse.Namespace, params: Params) -> None:
    from rnnops.core.io import remove_on_failure
    from rnnops.core.stage_files import VAL_SCORES
    from rnnops.stages.ensemble import run_ensemble

    if args.name not in params.ensembles:
        raise ConfigError(
            f"ensemble {args.name!r} is not defined under ensembles: in params.yaml "
            f"(defined: {', '.join(params.ensembles) or 'none'})"
        )
    members = params.ensembles[args.name].members
    tracking, tags, _ = _start_tracking(params, args.data)
    tags.update({MODEL_TAG: args.name, KIND_TAG: "ensemble", STAGE_TAG: "ensemble"})
    out = Path(args.out)
    with tracking.stage_run(
        run_name=args.name, tags=tags, execution=tracking.execution_key(f"ensemble@{args.name}")
    ) as run:
        member_cfgs = {m: params.models[m].model_dump(mode="json") for m in members}
        tracking.record_ensemble_inputs(args.name, members, member_cfgs, Path(args.data))
        with remove_on_failure(out / "model.keras", out / "train.json", out / VAL_SCORES):
            summary = run_ensemble(args.name, members, args.models, out, run_id=run.info.run_id)
            tracking.record_ensemble_outputs(summary, out)
    log.info(
        "ensemble@%s: mean of %s (%d parameters) -> %s",
        args.name,
        ", ".join(members),
        summary.trainable_params,
        args.out,
    )


def cmd_evaluate(args: argparse.Namespace, params: Params) -> None:
    from rnnops.core.io import read_json, remove_on_failure, write_json
    from rnnops.stages.evaluate import METRIC_KEYS, comparison_table, run_evaluate

    kind = _candidate_kind(params, args.model)
    model_dir, data_dir, report = Path(args.model_dir), Path(args.data), Path(args.report)
    train_info = read_json(model_dir / "train.json") if (model_dir / "train.json").exists() else {}
    tracking, tags, data_hash = _start_tracking(params, args.data)
    tags.update(
        {
            MODEL_TAG: args.model,
            KIND_TAG: kind,
            "rnnops.evaluate.threshold_rule": str(params.evaluate.threshold),
            "rnnops.evaluate.at_least_one": str(params.evaluate.at_least_one).lower(),
        }
    )
    with (
        tracking.stage_run(
            run_id=train_info.get("mlflow_run_id"),
            run_name=args.model,
            tags=tags,
            execution=tracking.execution_key(f"evaluate@{args.model}"),
        ) as run,
        remove_on_failure(args.metrics, args.plots, args.report),
    ):
        result = run_evaluate(
            args.model, params.evaluate, model_dir, data_dir, args.metrics, args.plots, report
        )
        paths = {
            "model_dir": model_dir,
            "data_dir": data_dir,
            "metrics": Path(args.metrics),
            "plots": Path(args.plots),
            "report": report,
        }
        model_uri = tracking.record_evaluation(args.model, result, METRIC_KEYS, paths, data_hash)
        write_json(
            report / "mlflow.json",
            {
                "run_id": run.info.run_id,
                "experiment_id": run.info.experiment_id,
                "model_uri": model_uri,
                "data_hash": data_hash,
            },
        )
    log.info(
        "evaluate@%s: accuracy %.4f, micro-F1 %.4f, macro-F1 %.4f -> %s",
        args.model,
        result["accuracy"],
        result["micro_f1"],
        result["macro_f1"],
        args.metrics,
    )
    print(comparison_table(Path(args.metrics).parent))


def cmd_promote(args: argparse.Namespace, params: Params) -> None:
    from rnnops.stages.promote import promotion_deferred, record_candidate, run_promote
    from rnnops.systems import tracking

    if promotion_deferred():
        record = record_candidate(
            params.candidates,
            params.promotion,
            Path(args.metrics),
            Path(args.evaluations),
            Path(args.out),
        )
        print(
            f"promotion deferred (sweep point): candidate {record['candidate']} "
            f"{record['metric']} {record['candidate_score']:.4f}"
        )
        return
    uri = tracking.configure(params.tracking.uri, params.tracking.experiment)
    log.info("MLflow registry at %s, model %s", uri, params.promotion.registered_model)
    decision = run_promote(
        params.candidates,
        params.promotion,
        Path(args.metrics),
        Path(args.evaluations),
        Path(args.data),
        Path(args.raw),
        Path(args.out),
    )
    print(
        f"{decision.registered_model} v{decision.candidate_version} ({decision.candidate}) -> "
        f"{decision.decision}: {decision.reason}"
    )


def cmd_compare(args: argparse.Namespace, params: Params) -> None:
    from rnnops.core.ablation import find_twins
    from rnnops.core.io import read_json
    from rnnops.stages.compare import run_compare

    names = params.candidates
    result = run_compare(
        names,
        {n: params.kind(n) for n in names},
        args.metrics,
        args.models,
        args.evaluations,
        args.data,
        args.raw,
        args.out_md,
        args.out_html,
        args.plots,
        baseline=not args.no_baseline,
        twins=find_twins(params.models),
        model_configs=params.models,
        promotion_path=args.promotion,
    )
    print(result.summary.to_string(index=False))
    if args.no_mlflow:
        return
    from rnnops.systems import tracking

    run_ids = [
        read_json(path)["run_id"]
        for n in names
        if (path := Path(args.evaluations) / n / "mlflow.json").exists()
    ]
    if run_ids:
        tracking.configure(params.tracking.uri, params.tracking.experiment)
        logged = tracking.log_files_to_runs(
            run_ids, [args.out_md, args.out_html, args.plots], "comparison"
        )
        log.info("compare: report logged to MLflow runs %s", ", ".join(logged))


def cmd_sweep(args: argparse.Namespace, params: Params) -> int:
    # Prefect is imported only here: the stages of dvc.yaml never pay for it.
    import rnnops

    # flows/ sits beside src/ in the project (not in the installed package): the
    # current directory, else the checkout this package was installed from (editable).
    for candidate in (Path.cwd(), Path(rnnops.__file__).resolve().parents[2]):
        if (candidate / "flows" / "sweep.py").exists():
            sys.path.insert(0, str(candidate))
            break
    else:
        raise ConfigError("flows/sweep.py not found: run `rnnops sweep` from the project root")
    from flows.sweep import main as sweep_main

    argv = [args.space, "--max-parallel", str(args.max_parallel), "--params", args.params]
    argv += ["--no-promote"] if args.no_promote else []
    argv += ["--apply-best"] if args.apply_best else []
    if args.deployment:
        argv += ["--deployment", args.deployment]
    return sweep_main(argv)


def cmd_reproduce(args: argparse.Namespace, params: Params) -> int:
    from rnnops.apps.reproduce import reproduce_run
    from rnnops.systems import tracking
    from rnnops.systems.store_check import check_store

    # The run must already be in a store: never create an empty one to look in.
    check_store(tracking.resolve_tracking_uri(params.tracking.uri), must_exist=True)
    tracking.configure(params.tracking.uri, params.tracking.experiment)
    result = reproduce_run(
        args.run_id, tracking.project_root(), tolerance=args.tolerance, keep=args.keep
    )
    print(f"run {result.run_id} ({result.model}) at commit {result.commit[:10]}")
    print(f"  data hash: recorded {result.data_hash_recorded}, reproduced {result.data_hash_now}")
    for key, old in result.metrics_recorded.items():
        new = result.metrics_now.get(key)
        mark = "  " if key not in result.differences else "!="
        print(
            f"  {mark} {key:<16} recorded {old:.6f}  reproduced {new if new is None else f'{new:.6f}'}"
        )
    print("metrics match" if result.matches else "metrics DO NOT match")
    return 0 if result.matches else 3


def cmd_serve(args: argparse.Namespace, params: Params) -> None:
    from rnnops.apps.serving import serve
    from rnnops.core.config import serving_config
    from rnnops.systems import tracking

    cfg = serving_config(
        params.serving,
        host=args.host,
        port=args.port,
        registered_model=args.model_name,
        alias=args.alias,
        max_body_bytes=args.max_body_bytes,
        max_documents=args.max_documents,
    )
    uri = tracking.use_tracking_uri(params.tracking.uri)
    log.info("MLflow registry at %s; serving models:/%s@%s", uri, cfg.registered_model, cfg.alias)
    serve(cfg, access_log=args.access_log)


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value[:40]!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def cmd_batch_score(args: argparse.Namespace, params: Params) -> int:
    from rnnops.apps.batch import (
        BatchInputError,
        check_csv_records,
        check_paths,
        pyfunc_predict,
        run_batch_score,
    )
    from rnnops.systems import tracking

    model_uri = args.model_uri or (
        f"models:/{params.serving.registered_model}@{params.serving.alias}"
    )
    try:
        # Paths and options are checked before the registry is asked or a model loaded.
        check_csv_records(args.csv_records)
        check_paths(args.input, args.output)
        if not Path(args.input).is_file():
            raise BatchInputError(f"input file {args.input} not found")
        if ":/" not in model_uri and not Path(model_uri).exists():
            raise BatchInputError(
                f"--model-uri {model_uri}: no such model directory (give models:/NAME@ALIAS, "
                "models:/NAME/VERSION, runs:/RUN_ID/model or a model directory)"
            )
        uri = tracking.use_tracking_uri(params.tracking.uri)
        model = tracking.resolve_model_version(model_uri)
        log.info("batch-score: %s is %s in %s", model_uri, model["uri"], uri)
        result = run_batch_score(
            pyfunc_predict(tracking.load_text_model(model["uri"])),
            args.input,
            args.output,
            model_name=model["name"],
            model_version=model["version"],
            model_uri=model["uri"],
            text_column=args.text_column,
            id_column=args.id_column,
            chunk_size=args.chunk_size,
            progress=not args.no_progress,
            csv_records=args.csv_records,
        )
    except (BatchInputError, tracking.ModelNotFoundError) as exc:
        print(f"rnnops batch-score: error: {exc}", file=sys.stderr)
        return 2
    for bad in result.bad_rows[:10]:
        print(f"  row {bad.row}: {bad.reason}", file=sys.stderr)
    if result.bad > 10:
        print(f"  ... and {result.bad - 10} more (status 'error' in the output)", file=sys.stderr)
    print(
        f"batch-score: {result.scored} of {result.rows} rows scored, {result.bad} with "
        f"status 'error', by {result.model_uri} in {result.seconds:.1f}s -> {result.output_path}"
    )
    return 0


def cmd_doctor(args: argparse.Namespace, params: Params) -> None:
    from rnnops.systems import tracking

    uri = tracking.resolve_tracking_uri(params.tracking.uri)
    reaped = tracking.doctor(uri, dry_run=args.dry_run)
    verb = "would mark" if args.dry_run else "marked"
    for item in reaped:
        print(f"{verb} run {item['run_id']} ({item['name']}) KILLED: {item['reason']}")
    print(
        f"doctor: {len(reaped)} run(s) left RUNNING by a dead process at {uri}"
        + ("" if reaped else "; nothing to do")
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rnnops",
        description="Recurrent text classifiers on Reuters: the stages of the DVC pipeline.",
    )
    parser.add_argument(
        "--params", default="params.yaml", help="parameter file (default: params.yaml)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="<stage>")

    p = sub.add_parser(
        "check-params",
        help="validate every section of the parameter file (the pipeline's first stage)",
        description="Validate the whole parameter file and write a marker file that every "
        "other stage depends on. DVC removes a stage's outputs before the stage's command "
        "runs, so a bad value must be caught here, before any stage with outputs starts.",
    )
    p.add_argument("--out", required=True, help="marker file, e.g. data/params_check.json")
    p.set_defaults(func=cmd_check_params)

    p = sub.add_parser(
        "ingest",
        help="read the corpus into one validated Parquet table",
        description="Read the corpus named by ingest.source into a table "
        "(doc_id, split, title, text, topics).",
    )
    p.add_argument(
        "--out", required=True, help="output Parquet file, e.g. data/raw/reuters.parquet"
    )
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser(
        "preprocess",
        help="tokenize, build the vocabulary, encode splits",
        description="Tokenize, build a train-only vocabulary, pad/truncate, carve a "
        "validation split, encode labels for the configured task.",
    )
    p.add_argument("--input", required=True, help="ingested Parquet table")
    p.add_argument("--out", required=True, help="output directory, e.g. data/processed")
    p.set_defaults(func=cmd_preprocess)

    p = sub.add_parser(
        "pretrain",
        help="learn word2vec embeddings from the training split",
        description="Learn word2vec vectors (params pretrain:) from the training documents "
        "of --data only; models with embedding_init: word2vec start from them.",
    )
    p.add_argument("--data", required=True, help="processed data directory")
    p.add_argument("--out", required=True, help="output directory, e.g. data/pretrained")
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser(
        "train",
        help="train one model from params.yaml models:",
        description="Train the model MODEL as configured under models.MODEL.",
    )
    p.add_argument("model", help="model name (a key of models: in params.yaml)")
    p.add_argument("--data", required=True, help="processed data directory")
    p.add_argument(
        "--pretrained",
        default=None,
        help="the pretrain stage's output (data/pretrained), for embedding_init: word2vec",
    )
    p.add_argument("--out", required=True, help="output directory, e.g. models/lstm")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "ensemble",
        help="combine trained models into one that averages their scores",
        description="Combine the members of ensembles.NAME (trained models under --models) "
        "into one Keras model whose scores are the mean of theirs; it is evaluated, "
        "compared and promoted like any model.",
    )
    p.add_argument("name", help="ensemble name (a key of ensembles: in params.yaml)")
    p.add_argument("--models", required=True, help="directory of models/<model>/model.keras")
    p.add_argument("--data", required=True, help="processed data directory (for lineage)")
    p.add_argument("--out", required=True, help="output directory, e.g. ensembles/mean")
    p.set_defaults(func=cmd_ensemble)

    p = sub.add_parser(
        "evaluate",
        help="score a trained model on the test split",
        description="Score MODEL on the held-out test split; write metrics and plots.",
    )
    p.add_argument("model", help="model name (a key of models: or ensembles: in params.yaml)")
    p.add_argument("--model-dir", required=True, help="directory holding model.keras")
    p.add_argument("--data", required=True, help="processed data directory")
    p.add_argument("--metrics", required=True, help="metrics JSON to write, e.g. metrics/lstm.json")
    p.add_argument("--plots", required=True, help="plots directory to write, e.g. plots/lstm")
    p.add_argument("--report", required=True, help="report directory to write, e.g. reports/lstm")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "promote",
        help="register the best model; move champion only on evidence",
        description="Register this execution's best model (by promotion.metric) and "
        "move the champion alias only if it beats the champion on the same test data "
        "by promotion.min_delta; else it becomes challenger.",
    )
    p.add_argument("--metrics", required=True, help="directory of metrics/<model>.json")
    p.add_argument(
        "--evaluations", required=True, help="directory of evaluate report dirs, e.g. reports/eval"
    )
    p.add_argument(
        "--data", required=True, help="processed data directory (to re-score the champion)"
    )
    p.add_argument("--raw", required=True, help="ingested Parquet table (raw test texts)")
    p.add_argument(
        "--out", required=True, help="decision JSON to write, e.g. reports/promotion.json"
    )
    p.set_defaults(func=cmd_promote)

    p = sub.add_parser(
        "compare",
        help="compare the evaluated models: report (md, html) and figures",
        description="Write a comparison of every model in params.yaml models: a table "
        "(architecture, parameters, time, epochs, test metrics), learning curves, per-class F1, "
        "metrics by document length and the gap to a TF-IDF + linear SVM baseline; log the "
        "report to each model's MLflow run.",
    )
    p.add_argument("--metrics", required=True, help="directory of metrics/<model>.json")
    p.add_argument("--models", required=True, help="directory of models/<model>/history.csv")
    p.add_argument(
        "--evaluations", required=True, help="directory of evaluate report dirs, e.g. reports/eval"
    )
    p.add_argument("--data", required=True, help="processed data directory")
    p.add_argument("--raw", required=True, help="ingested Parquet table (for the baseline)")
    p.add_argument("--out-md", required=True, help="markdown report, e.g. reports/comparison.md")
    p.add_argument("--out-html", required=True, help="HTML report, e.g. reports/comparison.html")
    p.add_argument("--plots", required=True, help="figures directory, e.g. plots/comparison")
    p.add_argument(
        "--promotion",
        help="the promote stage's decision, e.g. reports/promotion.json (names the champion)",
    )
    p.add_argument("--no-baseline", action="store_true", help="skip the TF-IDF + SVM baseline")
    p.add_argument("--no-mlflow", action="store_true", help="do not log the report to MLflow")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser(
        "sweep",
        help="run a sweep of DVC experiments in parallel (Prefect); promote the best",
        description="Run every point of SPACE (a YAML file: a grid {key: [values]} or a list "
        "of override mappings, optionally under 'space:') as an isolated DVC experiment, at "
        "most --max-parallel at once; the best point goes through the promotion gate. Run it "
        "from the project root (it imports flows/sweep.py).",
    )
    p.add_argument("space", help="YAML file with the sweep space")
    p.add_argument("--max-parallel", type=int, default=2, help="points at once (default 2)")
    p.add_argument("--no-promote", action="store_true", help="do not promote the best point")
    p.add_argument("--apply-best", action="store_true", help="dvc exp apply the best point")
    p.add_argument(
        "--deployment", help="dispatch points as runs of this deployment, e.g. training/sweep-point"
    )
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser(
        "reproduce",
        help="re-run a tracked model from its commit, data and params",
        description="Check the run's recorded commit out into a fresh git worktree, "
        "restore its data with DVC, re-train and re-evaluate with the recorded params, "
        "and report whether the test metrics match (exit 3 when they do not).",
    )
    p.add_argument("--run-id", required=True, help="MLflow run id")
    p.add_argument("--tolerance", type=float, default=1e-6, help="absolute tolerance per metric")
    p.add_argument("--keep", action="store_true", help="keep the temporary worktree output")
    p.set_defaults(func=cmd_reproduce)

    p = sub.add_parser(
        "serve",
        help="answer HTTP requests with the champion's topics of raw text",
        description="Serve models:/<serving.registered_model>@<serving.alias> over HTTP: "
        'POST /predict with {"text": "..."} or {"text": [...]}, GET /health, POST /reload '
        "(load the version the alias points at now; the current one keeps serving if it "
        "fails). Flags override the serving: section of params.yaml.",
    )
    p.add_argument("--host", help="interface to listen on (default: serving.host, 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default: serving.port)")
    p.add_argument("--model-name", help="registered model (default: serving.registered_model)")
    p.add_argument("--alias", help="alias to serve (default: serving.alias, champion)")
    p.add_argument(
        "--max-body-bytes", type=int, help="larger bodies get 413 (default: serving.max_body_bytes)"
    )
    p.add_argument(
        "--max-documents",
        type=int,
        help="more documents per request get 413 (default: serving.max_documents)",
    )
    p.add_argument("--access-log", action="store_true", help="log every request")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser(
        "batch-score",
        help="score a file of documents with a registered model",
        description="Score INPUT (.csv, .parquet, .jsonl with a text column) with one pinned "
        "version of --model-uri and write OUTPUT (.parquet, or .csv with lists joined by ';'): "
        "one row per input record, in order, with its status ('scored' or 'error') and "
        "reason. A malformed record is an error row of its own; it never merges into the "
        "next. The same core as flows/batch_score.py, without Prefect. Exit 2: the file or "
        "an option cannot be used at all (nothing is written).",
    )
    p.add_argument("input", help="documents to score: .csv, .parquet or .jsonl")
    p.add_argument("output", help="scores to write (atomically): .parquet or .csv")
    p.add_argument(
        "--model-uri",
        help="model to score with (default: models:/<serving.registered_model>@<serving.alias>, "
        "models:/reuters-topics@champion)",
    )
    p.add_argument("--text-column", default="text", help="column holding the text (default text)")
    p.add_argument("--id-column", help="column copied to the output to identify each row")
    p.add_argument(
        "--chunk-size",
        type=_positive_int,
        default=1000,
        help="documents scored at once (default 1000)",
    )
    p.add_argument(
        "--csv-records",
        choices=("auto", "lines", "quoted"),
        default="auto",
        help="how CSV records are delimited: auto (quoted fields may span lines unless that "
        "would swallow whole records; default), lines (one record a line), quoted (quoted "
        "fields span lines as written)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(func=cmd_batch_score)

    p = sub.add_parser(
        "doctor",
        help="mark KILLED the MLflow runs left RUNNING by a dead process",
        description="Find MLflow runs still RUNNING whose process on this host no longer "
        "exists (killed with SIGKILL, or the machine went down) and mark them KILLED. "
        "Runs of other hosts and of live processes are left alone. The training flow "
        "does the same before it runs any stage.",
    )
    p.add_argument("--dry-run", action="store_true", help="list them, change nothing")
    p.set_defaults(func=cmd_doctor)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    func: Callable = args.func
    from rnnops.systems.tracking import Terminated

    def _terminate(signum, frame):
        raise Terminated(f"received signal {signum}")

    # SIGTERM becomes an exception so open MLflow runs end KILLED and partial
    # outputs are removed on the way out.
    signal.signal(signal.SIGTERM, _terminate)
    INVALID_INPUT = _invalid_input_errors()
    try:
        try:
            params = load_params(args.params)
        except ConfigError as exc:
            print(f"rnnops {args.command}: error: {exc}", file=sys.stderr)
            print(f"rnnops {args.command}: {params_restore_hint(args.params)}", file=sys.stderr)
            return 2
        status = func(args, params)
        if status:
            return int(status)
    except INVALID_INPUT as exc:
        print(f"rnnops {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Terminated) as exc:
        print(f"rnnops {args.command}: interrupted ({exc or 'Ctrl-C'})", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    except Exception as exc:  # the stage's own message, without a traceback wall
        if args.verbose:
            raise
        from rnnops.systems.store_check import StoreUnreachableError

        # Messages written for the user stand alone; others carry their type for context.
        text = (
            str(exc) if isinstance(exc, StoreUnreachableError) else f"{type(exc).__name__}: {exc}"
        )
        print(f"rnnops {args.command}: error: {text}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
