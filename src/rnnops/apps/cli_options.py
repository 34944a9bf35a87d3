"""The option types of the ``rnnops`` command line: paths, counts, choices, and the command
classes that make click's usage errors name the command they are about."""

from __future__ import annotations

from typing import Annotated

import typer

try:  # typer >= 0.26 vendors click; its exception classes live only there
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover
    from click.exceptions import ClickException


def positive_int(value: str | int) -> int:
    text = str(value)
    try:
        number = int(text)
    except ValueError:
        raise typer.BadParameter(f"{text[:40]!r} is not a whole number") from None
    if number < 1:
        raise typer.BadParameter(f"must be at least 1, got {number}")
    return number


CSV_RECORDS = ("auto", "lines", "quoted")


def csv_records_mode(value: str) -> str:
    if value not in CSV_RECORDS:
        raise typer.BadParameter(
            f"invalid choice: {value[:40]!r} (choose from {', '.join(CSV_RECORDS)})"
        )
    return value


def dir_option(help: str, *names: str, default: str | None = None) -> typer.models.OptionInfo:
    """A path option; ``default`` is shown where the real one depends on another argument."""
    return typer.Option(*names, help=help, metavar="DIR", show_default=default or True)


def file_option(help: str, *names: str, default: str | None = None) -> typer.models.OptionInfo:
    return typer.Option(*names, help=help, metavar="FILE", show_default=default or True)


def option(metavar: str, help: str, **more) -> typer.models.OptionInfo:
    return typer.Option(metavar=metavar, help=help, **more)


def flag(*names: str, help: str) -> typer.models.OptionInfo:
    return typer.Option(*names, help=help, show_default=False)


Data = Annotated[str, dir_option("processed data directory")]
Metrics = Annotated[str, dir_option("directory of metrics/<model>.json")]
Evaluations = Annotated[str, dir_option("directory of the evaluate stages' report directories")]
Models = Annotated[str, dir_option("directory of models/<model>/ (model.keras, history.csv)")]
Raw = Annotated[str, file_option("ingested Parquet table (the raw texts)")]


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


class Group(_KeepContext, typer.core.TyperGroup):
    pass


class Command(_KeepContext, typer.core.TyperCommand):
    pass
