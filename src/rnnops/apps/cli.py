"""``rnnops`` command line: one subcommand per pipeline stage (what dvc.yaml calls).

Every path option defaults to what dvc.yaml passes its stage, so ``rnnops compare`` alone
redoes the comparison of the pipeline's outputs. Parsing only builds a :class:`Call`;
:func:`main` loads the parameter file, runs the body from :mod:`rnnops.apps.commands` and
turns what it raises into an exit status.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated

import typer

from rnnops.apps import commands
from rnnops.core.config import ConfigError, Params, load_params

try:  # typer >= 0.26 vendors click; its exception classes live only there
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover
    from click.exceptions import ClickException


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


def params_restore_hint(path: str) -> str:
    """How to get a valid parameter file back; ``dvc exp run -S`` writes its values into it."""
    return (
        f"{path} now holds that value if `dvc exp run -S` or `dvc exp apply` wrote it: fix "
        f"the value, or see the change with `git diff {path}` and restore the committed "
        f"file with `git checkout -- {path}`."
    )


@dataclass(frozen=True)
class Call:
    """A parsed command line, run by main() once the parameter file is loaded."""

    command: str
    params_file: str
    verbose: bool
    run: Callable[[Params], int | None]


def _call(ctx: typer.Context, body: Callable[..., int | None], **extra) -> Call:
    """The parsed command: its options (``ctx.params``, named as ``body``'s parameters) bound
    to ``body``, which main() calls with the loaded parameter file."""
    options = ctx.find_root().params
    run = functools.partial(body, **ctx.params, **extra)
    return Call(ctx.info_name or "", options["params"], options["verbose"], run)


def _positive_int(value: str | int) -> int:
    text = str(value)
    try:
        number = int(text)
    except ValueError:
        raise typer.BadParameter(f"{text[:40]!r} is not a whole number") from None
    if number < 1:
        raise typer.BadParameter(f"must be at least 1, got {number}")
    return number


CSV_RECORDS = ("auto", "lines", "quoted")


def _csv_records(value: str) -> str:
    if value not in CSV_RECORDS:
        raise typer.BadParameter(
            f"invalid choice: {value[:40]!r} (choose from {', '.join(CSV_RECORDS)})"
        )
    return value


def _dir(help: str, *names: str, default: str | None = None) -> typer.models.OptionInfo:
    """A path option; ``default`` is shown where the real one depends on another argument."""
    return typer.Option(*names, help=help, metavar="DIR", show_default=default or True)


def _file(help: str, *names: str, default: str | None = None) -> typer.models.OptionInfo:
    return typer.Option(*names, help=help, metavar="FILE", show_default=default or True)


def _opt(metavar: str, help: str, **more) -> typer.models.OptionInfo:
    return typer.Option(metavar=metavar, help=help, **more)


def _flag(*names: str, help: str) -> typer.models.OptionInfo:
    return typer.Option(*names, help=help, show_default=False)


Data = Annotated[str, _dir("processed data directory")]
Metrics = Annotated[str, _dir("directory of metrics/<model>.json")]
Evaluations = Annotated[str, _dir("directory of the evaluate stages' report directories")]
Models = Annotated[str, _dir("directory of models/<model>/ (model.keras, history.csv)")]
Raw = Annotated[str, _file("ingested Parquet table (the raw texts)")]


class _KeepContext:
    """Attach the context being parsed to the usage errors click raises without one (an
    option missing its value), so the message names the command."""

    def parse_args(self, ctx, args):
        try:
            return super().parse_args(ctx, args)
        except ClickException as exc:
            if getattr(exc, "ctx", None) is None:
                exc.ctx = ctx
            raise


class _Group(_KeepContext, typer.core.TyperGroup):
    pass


class _Command(_KeepContext, typer.core.TyperCommand):
    pass


app = typer.Typer(
    name="rnnops",
    cls=_Group,
    help="Recurrent text classifiers on Reuters: the stages of the DVC pipeline.",
    add_completion=False,
    # Plain help: descriptions hold brackets (e.g. {key: [values]}) that Rich would eat.
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _command(name: str, short_help: str) -> Callable:
    return app.command(name, cls=_Command, short_help=short_help)


@app.callback()
def _options(
    params: Annotated[str, _file("parameter file", "--params")] = "params.yaml",
    verbose: Annotated[
        bool, _flag("-v", "--verbose", help="debug logging; a traceback on unexpected errors")
    ] = False,
) -> None:
    """Recurrent text classifiers on Reuters: the stages of the DVC pipeline."""


@_command(
    "check-params", "validate every section of the parameter file (the pipeline's first stage)"
)
def _check_params(
    ctx: typer.Context,
    out: Annotated[str, _file("marker file to write")] = "data/params_check.json",
) -> Call:
    """Validate the whole parameter file and write a marker file that every other stage
    depends on. DVC removes a stage's outputs before the stage's command runs, so a bad
    value must be caught here, before any stage with outputs starts."""
    params_file = ctx.find_root().params["params"]
    return _call(ctx, commands.cmd_check_params, params_file=params_file)


@_command("ingest", "read the corpus into one validated Parquet table")
def _ingest(
    ctx: typer.Context,
    out: Annotated[str, _file("output Parquet file")] = "data/raw/reuters.parquet",
) -> Call:
    """Read the corpus named by ingest.source into a table (doc_id, split, title, text,
    topics)."""
    return _call(ctx, commands.cmd_ingest)


@_command("preprocess", "tokenize, build the vocabulary, encode splits")
def _preprocess(
    ctx: typer.Context,
    input_path: Annotated[str, _file("ingested Parquet table", "--input")] = (
        "data/raw/reuters.parquet"
    ),
    out: Annotated[str, _dir("output directory")] = "data/processed",
) -> Call:
    """Tokenize, build a train-only vocabulary, pad/truncate, carve a validation split,
    encode labels for the configured task."""
    return _call(ctx, commands.cmd_preprocess)


@_command("pretrain", "learn word2vec embeddings from the training split")
def _pretrain(
    ctx: typer.Context,
    data: Data = "data/processed",
    out: Annotated[str, _dir("output directory")] = "data/pretrained",
) -> Call:
    """Learn word2vec vectors (params pretrain:) from the training documents of --data
    only; models with embedding_init: word2vec start from them."""
    return _call(ctx, commands.cmd_pretrain)


@_command("train", "train one model from params.yaml models:")
def _train(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(metavar="MODEL", help="a key of models: in params.yaml")],
    data: Data = "data/processed",
    pretrained: Annotated[
        str, _dir("the pretrain stage's output, for embedding_init: word2vec")
    ] = "data/pretrained",
    out: Annotated[str | None, _dir("output directory", default="models/MODEL")] = None,
) -> Call:
    """Train the model MODEL as configured under models.MODEL."""
    return _call(ctx, commands.cmd_train)


@_command("ensemble", "combine trained models into one that averages their scores")
def _ensemble(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="a key of ensembles: in params.yaml")],
    models: Annotated[str, _dir("directory of models/<model>/model.keras")] = "models",
    data: Annotated[str, _dir("processed data directory (for lineage)")] = "data/processed",
    out: Annotated[str | None, _dir("output directory", default="ensembles/NAME")] = None,
) -> Call:
    """Combine the members of ensembles.NAME (trained models under --models) into one
    Keras model whose scores are the mean of theirs; it is evaluated, compared and
    promoted like any model."""
    return _call(ctx, commands.cmd_ensemble)


@_command("evaluate", "score a trained model on the test split")
def _evaluate(
    ctx: typer.Context,
    model: Annotated[
        str, typer.Argument(metavar="MODEL", help="a key of models: or ensembles: in params.yaml")
    ],
    model_dir: Annotated[
        str | None,
        _dir(
            "directory holding model.keras",
            default="models/MODEL; ensembles/MODEL for an ensemble",
        ),
    ] = None,
    data: Data = "data/processed",
    metrics: Annotated[str | None, _file("metrics JSON to write", default="metrics/MODEL.json")] = (
        None
    ),
    plots: Annotated[str | None, _dir("plots directory to write", default="plots/MODEL")] = None,
    report: Annotated[
        str | None, _dir("report directory to write", default="reports/eval/MODEL")
    ] = None,
) -> Call:
    """Score MODEL on the held-out test split; write metrics and plots."""
    return _call(ctx, commands.cmd_evaluate)


@_command("promote", "register the best model; move champion only on evidence")
def _promote(
    ctx: typer.Context,
    metrics: Metrics = "metrics",
    evaluations: Evaluations = "reports/eval",
    data: Annotated[str, _dir("processed data directory (to re-score the champion)")] = (
        "data/processed"
    ),
    raw: Raw = "data/raw/reuters.parquet",
    out: Annotated[str, _file("decision JSON to write")] = "reports/promotion.json",
) -> Call:
    """Register this execution's best model (by promotion.metric) and move the champion
    alias only if it beats the champion on the same test data by promotion.min_delta;
    else it becomes challenger."""
    return _call(ctx, commands.cmd_promote)


@_command("compare", "compare the evaluated models: report (md, html) and figures")
def _compare(
    ctx: typer.Context,
    metrics: Metrics = "metrics",
    models: Models = "models",
    evaluations: Evaluations = "reports/eval",
    data: Data = "data/processed",
    raw: Raw = "data/raw/reuters.parquet",
    out_md: Annotated[str, _file("markdown report to write")] = "reports/comparison.md",
    out_html: Annotated[str, _file("HTML report to write")] = "reports/comparison.html",
    plots: Annotated[str, _dir("figures directory to write")] = "plots/comparison",
    promotion: Annotated[
        str, _file("the promote stage's decision (names the champion; skipped if absent)")
    ] = "reports/promotion.json",
    baseline: Annotated[
        bool, typer.Option("--baseline/--no-baseline", help="the TF-IDF + linear SVM baseline")
    ] = True,
    mlflow: Annotated[
        bool, typer.Option("--mlflow/--no-mlflow", help="log the report to the MLflow runs")
    ] = True,
) -> Call:
    """Write a comparison of every model in params.yaml models: a table (architecture,
    parameters, time, epochs, test metrics), learning curves, per-class F1, metrics by
    document length and the gap to a TF-IDF + linear SVM baseline; log the report to
    each model's MLflow run."""
    return _call(ctx, commands.cmd_compare)


@_command("sweep", "run a sweep of DVC experiments in parallel (Prefect); promote the best")
def _sweep(
    ctx: typer.Context,
    space: Annotated[str, typer.Argument(metavar="SPACE", help="YAML file with the sweep space")],
    max_parallel: Annotated[
        int | None, _opt("N", "points at once (default: the sweep file's max_parallel, else 2)")
    ] = None,
    promote: Annotated[
        bool, typer.Option("--promote/--no-promote", help="promote the best point")
    ] = True,
    apply_best: Annotated[bool, _flag("--apply-best", help="dvc exp apply the best point")] = (
        False
    ),
    deployment: Annotated[
        str | None, _opt("NAME", "dispatch points as runs of this deployment, e.g. training/point")
    ] = None,
) -> Call:
    """Run every point of SPACE (a YAML file: a grid {key: [values]} or a list of override
    mappings, optionally under 'space:') as an isolated DVC experiment, at most
    --max-parallel at once; the best point goes through the promotion gate. Run it from
    the project root (it imports flows/sweep.py)."""
    return _call(ctx, commands.cmd_sweep, params_file=ctx.find_root().params["params"])


@_command("reproduce", "re-run a tracked model from its commit, data and params")
def _reproduce(
    ctx: typer.Context,
    run_id: Annotated[str, _opt("ID", "MLflow run id", show_default=False)],
    tolerance: Annotated[float, _opt("X", "absolute tolerance per metric")] = 1e-6,
    keep: Annotated[bool, _flag("--keep", help="keep the temporary worktree output")] = False,
) -> Call:
    """Check the run's recorded commit out into a fresh git worktree, restore its data
    with DVC, re-train and re-evaluate with the recorded params, and report whether the
    test metrics match (exit 3 when they do not)."""
    return _call(ctx, commands.cmd_reproduce)


@_command("serve", "answer HTTP requests with the champion's topics of raw text")
def _serve(
    ctx: typer.Context,
    host: Annotated[str | None, _opt("HOST", "interface to listen on (default: serving.host)")] = (
        None
    ),
    port: Annotated[int | None, _opt("N", "port (default: serving.port)")] = None,
    model_name: Annotated[
        str | None, _opt("NAME", "registered model (default: serving.registered_model)")
    ] = None,
    alias: Annotated[str | None, _opt("NAME", "alias to serve (default: serving.alias)")] = None,
    max_body_bytes: Annotated[
        int | None, _opt("N", "larger bodies get 413 (default: serving.max_body_bytes)")
    ] = None,
    max_documents: Annotated[
        int | None, _opt("N", "more documents per request get 413 (default: serving.max_documents)")
    ] = None,
    access_log: Annotated[bool, _flag("--access-log", help="log every request")] = False,
) -> Call:
    """Serve models:/<serving.registered_model>@<serving.alias> over HTTP: POST /predict
    with {"text": "..."} or {"text": [...]}, GET /health, POST /reload (load the version
    the alias points at now; the current one keeps serving if it fails). Flags override
    the serving: section of params.yaml."""
    return _call(ctx, commands.cmd_serve)


@_command("batch-score", "score a file of documents with a registered model")
def _batch_score(
    ctx: typer.Context,
    input_path: Annotated[
        str, typer.Argument(metavar="INPUT", help="documents to score: .csv, .parquet or .jsonl")
    ],
    output_path: Annotated[
        str, typer.Argument(metavar="OUTPUT", help="scores to write (atomically): .parquet or .csv")
    ],
    model_uri: Annotated[
        str | None,
        _opt("URI", "model to score with (default: models:/NAME@ALIAS of the serving: section)"),
    ] = None,
    text_column: Annotated[str, _opt("NAME", "column holding the text")] = "text",
    id_column: Annotated[
        str | None, _opt("NAME", "column copied to the output to identify each row")
    ] = None,
    chunk_size: Annotated[int, _opt("N", "documents scored at once", parser=_positive_int)] = 1000,
    csv_records: Annotated[
        str,
        _opt(
            "[" + "|".join(CSV_RECORDS) + "]",
            "how CSV records are delimited: auto (quoted fields may span lines unless that "
            "would swallow whole records), lines (one record a line), quoted (quoted fields "
            "span lines as written)",
            parser=_csv_records,
        ),
    ] = "auto",
    progress: Annotated[
        bool, typer.Option("--progress/--no-progress", help="a progress bar on stderr")
    ] = True,
) -> Call:
    """Score INPUT (.csv, .parquet, .jsonl with a text column) with one pinned version of
    --model-uri and write OUTPUT (.parquet, or .csv with lists joined by ';'): one row
    per input record, in order, with its status ('scored' or 'error') and reason. A
    malformed record is an error row of its own; it never merges into the next. The same
    core as flows/batch_score.py, without Prefect. Exit 2: the file or an option cannot
    be used at all (nothing is written)."""
    return _call(ctx, commands.cmd_batch_score)


@_command("doctor", "mark KILLED the MLflow runs left RUNNING by a dead process")
def _doctor(
    ctx: typer.Context,
    dry_run: Annotated[bool, _flag("--dry-run", help="list them, change nothing")] = False,
) -> Call:
    """Find MLflow runs still RUNNING whose process on this host no longer exists (killed
    with SIGKILL, or the machine went down) and mark them KILLED. Runs of other hosts
    and of live processes are left alone. The training flow does the same before it runs
    any stage."""
    return _call(ctx, commands.cmd_doctor)


def _usage_error(exc: ClickException) -> int:
    """argparse's layout: the usage, then ``rnnops <command>: error: ...`` on stderr."""
    ctx = getattr(exc, "ctx", None)
    where = ctx.command_path if ctx is not None else "rnnops"
    if ctx is not None:
        print(ctx.get_usage(), file=sys.stderr)
        print(f"Try '{where} --help' for help.", file=sys.stderr)
    print(f"{where}: error: {exc.format_message()}", file=sys.stderr)
    return exc.exit_code


def parse(argv: Sequence[str]) -> Call | int:
    """The command line as a :class:`Call`, or the exit status when there is nothing to run
    (``--help``: 0; a usage error, reported on stderr: 2)."""
    command = typer.main.get_command(app)
    try:
        # standalone_mode=False: errors come back here instead of ending the process.
        result = command.main(args=list(argv), prog_name="rnnops", standalone_mode=False)
    except ClickException as exc:
        return _usage_error(exc)
    return result if isinstance(result, Call) else int(result or 0)


def run(call: Call) -> int:
    """Load the parameter file, run the command, map what it raises to an exit status."""
    from rnnops.systems.tracking import Terminated

    def _terminate(signum, frame):
        raise Terminated(f"received signal {signum}")

    # SIGTERM becomes an exception so open MLflow runs end KILLED and partial
    # outputs are removed on the way out.
    signal.signal(signal.SIGTERM, _terminate)
    INVALID_INPUT = _invalid_input_errors()
    name = f"rnnops {call.command}"
    try:
        try:
            params = load_params(call.params_file)
        except ConfigError as exc:
            print(f"{name}: error: {exc}", file=sys.stderr)
            print(f"{name}: {params_restore_hint(call.params_file)}", file=sys.stderr)
            return 2
        status = call.run(params)
        if status:
            return int(status)
    except INVALID_INPUT as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Terminated) as exc:
        print(f"{name}: interrupted ({str(exc) or 'Ctrl-C'})", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    except Exception as exc:  # the stage's own message, without a traceback wall
        if call.verbose:
            raise
        from rnnops.systems.store_check import StoreUnreachableError

        # Messages written for the user stand alone; others carry their type for context.
        text = (
            str(exc) if isinstance(exc, StoreUnreachableError) else f"{type(exc).__name__}: {exc}"
        )
        print(f"{name}: error: {text}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    call = parse(sys.argv[1:] if argv is None else argv)
    if not isinstance(call, Call):
        return call
    _setup_logging(call.verbose)
    return run(call)


if __name__ == "__main__":
    sys.exit(main())
