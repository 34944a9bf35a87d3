"""How a parsed ``rnnops`` command runs: logging, the parameter file, exit statuses.

0: done; 2: the input is wrong (a usage error, a bad parameter file, data that breaks the
contract), so retrying cannot help; 1: anything else, with the stage's own message;
130/143: interrupted (Ctrl-C, SIGTERM), after open MLflow runs are ended KILLED.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass

from rnnops.core.config import ConfigError, Params, load_params


@dataclass(frozen=True)
class Call:
    """A parsed command line, run by main() once the parameter file is loaded."""

    command: str
    params_file: str
    verbose: bool
    run: Callable[[Params], int | None]


def invalid_input_errors() -> tuple[type[BaseException], ...]:
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


def setup_logging(verbose: bool) -> None:
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


def usage_error(exc) -> int:
    """argparse's layout: the usage, then ``rnnops <command>: error: ...`` on stderr."""
    ctx = getattr(exc, "ctx", None)
    where = ctx.command_path if ctx is not None else "rnnops"
    if ctx is not None:
        print(ctx.get_usage(), file=sys.stderr)
        print(f"Try '{where} --help' for help.", file=sys.stderr)
    print(f"{where}: error: {exc.format_message()}", file=sys.stderr)
    return exc.exit_code


def run(call: Call) -> int:
    """Load the parameter file, run the command, map what it raises to an exit status."""
    from rnnops.systems.tracking import Terminated

    def _terminate(signum, frame):
        raise Terminated(f"received signal {signum}")

    # SIGTERM becomes an exception so open MLflow runs end KILLED and partial
    # outputs are removed on the way out.
    signal.signal(signal.SIGTERM, _terminate)
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
    except (KeyboardInterrupt, Terminated) as exc:
        print(f"{name}: interrupted ({str(exc) or 'Ctrl-C'})", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    except Exception as exc:  # the stage's own message, without a traceback wall
        # The error types are looked up only once something failed: importing every stage
        # up front (scikit-learn among them) cost each stage process seconds at start.
        if isinstance(exc, invalid_input_errors()):
            print(f"{name}: error: {exc}", file=sys.stderr)
            return 2
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
