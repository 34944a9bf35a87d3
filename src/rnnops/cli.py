"""``rnnops`` command line: one subcommand per pipeline stage (what dvc.yaml calls)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from rnnops.config import ConfigError, Params, load_params

log = logging.getLogger("rnnops")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def cmd_ingest(args: argparse.Namespace, params: Params) -> None:
    from rnnops.ingest import run_ingest

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
    from rnnops.preprocess import run_preprocess

    result = run_preprocess(params.preprocess, args.input, args.out)
    log.info(
        "preprocess: %s documents, %d labels, vocabulary %d -> %s",
        result.splits,
        result.labels,
        result.vocab_size,
        args.out,
    )


def _model_cfg(params: Params, name: str):
    if name not in params.models:
        raise ConfigError(
            f"model {name!r} is not defined under models: in params.yaml "
            f"(defined: {', '.join(params.models)})"
        )
    return params.models[name]


def cmd_train(args: argparse.Namespace, params: Params) -> None:
    from rnnops.train import run_train

    summary = run_train(args.model, _model_cfg(params, args.model), args.data, args.out)
    log.info(
        "train@%s: %d epochs in %.1fs (best epoch %d, val_loss %.4f, %d parameters) -> %s",
        args.model,
        summary.epochs_run,
        summary.train_seconds,
        summary.best_epoch,
        summary.best_val_loss,
        summary.trainable_params,
        args.out,
    )


def cmd_evaluate(args: argparse.Namespace, params: Params) -> None:
    from rnnops.evaluate import comparison_table, run_evaluate

    _model_cfg(params, args.model)
    result = run_evaluate(
        args.model,
        params.evaluate,
        args.model_dir,
        args.data,
        args.metrics,
        args.plots,
        args.report,
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
        "train",
        help="train one model from params.yaml models:",
        description="Train the model MODEL as configured under models.MODEL.",
    )
    p.add_argument("model", help="model name (a key of models: in params.yaml)")
    p.add_argument("--data", required=True, help="processed data directory")
    p.add_argument("--out", required=True, help="output directory, e.g. models/lstm")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "evaluate",
        help="score a trained model on the test split",
        description="Score MODEL on the held-out test split; write metrics and plots.",
    )
    p.add_argument("model", help="model name (a key of models: in params.yaml)")
    p.add_argument("--model-dir", required=True, help="directory holding model.keras")
    p.add_argument("--data", required=True, help="processed data directory")
    p.add_argument("--metrics", required=True, help="metrics JSON to write, e.g. metrics/lstm.json")
    p.add_argument("--plots", required=True, help="plots directory to write, e.g. plots/lstm")
    p.add_argument("--report", required=True, help="report directory to write, e.g. reports/lstm")
    p.set_defaults(func=cmd_evaluate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    func: Callable = args.func
    try:
        params = load_params(args.params)
        func(args, params)
    except ConfigError as exc:
        print(f"rnnops {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"rnnops {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the stage's own message, without a traceback wall
        if args.verbose:
            raise
        print(f"rnnops {args.command}: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
