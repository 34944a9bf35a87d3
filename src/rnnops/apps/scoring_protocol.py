"""MLflow's scoring protocol (``POST /invocations``) for rnnops' one-column model.

MLflow's clients (``mlflow models predict``-style requests, ``mlflow deployments``,
anything written against ``mlflow models serve``) send a JSON object with exactly one
of these fields, optionally next to ``params``:

- ``dataframe_split``: ``{"columns": ["text"], "data": [["story"], ...]}`` (``index``
  allowed);
- ``dataframe_records``: ``[{"text": "story"}, ...]``;
- ``inputs`` or ``instances``: ``{"text": "story"}``, ``{"text": ["story", ...]}``,
  ``["story", ...]`` or ``[{"text": "story"}, ...]``.

The model reads one column, ``text``, of strings; other columns are refused (400) as
``/predict`` refuses other fields. The model takes no parameters: ``params`` must be
absent, null or empty. Messages name fields, positions and types, never the input.
"""

from __future__ import annotations

from typing import Any

from rnnops.apps.serving_requests import (
    RequestError,
    _json_type,
    check_count,
    check_documents,
    decode_json_body,
    require_strings,
)

FORMATS = ("dataframe_split", "dataframe_records", "inputs", "instances")
COLUMN = "text"
EXAMPLE = '{"dataframe_split": {"columns": ["text"], "data": [["one document"]]}}'


def parse_invocation(body: bytes, max_documents: int) -> list[str]:
    """The documents of an ``/invocations`` body, or a :class:`RequestError` (400/413)."""
    payload = decode_json_body(body, EXAMPLE)
    if not isinstance(payload, dict):
        raise RequestError(
            400, f"the body must be a JSON object such as {EXAMPLE}, not {_json_type(payload)}"
        )
    formats = [key for key in FORMATS if key in payload]
    others = [key for key in payload if key not in FORMATS and key != "params"]
    if len(formats) != 1 or others:
        found = f"{len(formats)} of them" if not others else f"{len(others)} other field(s)"
        raise RequestError(
            400,
            f"the body must hold exactly one of the fields {', '.join(FORMATS)} (and optionally "
            f"params); it holds {found}",
        )
    params = payload.get("params")
    if params not in (None, {}):
        raise RequestError(400, '"params": this model takes no parameters')
    kind = formats[0]
    value = payload[kind]
    if kind == "dataframe_split":
        column = _split_column(value)
    elif kind == "dataframe_records":
        column = _records_column(value, kind)
    else:
        column = _inputs_column(value, kind)
    if not column:
        raise RequestError(400, f'"{kind}" holds no rows; send at least one document')
    check_count(len(column), max_documents)
    require_strings(column, f'column "{COLUMN}" must hold strings', "row")
    return check_documents(column)


def _only_text(columns: list, where: str) -> None:
    if COLUMN not in columns:
        raise RequestError(400, f'{where} has no "{COLUMN}" column; the model reads "{COLUMN}"')
    if len(columns) > 1:
        raise RequestError(
            400, f'{where} has {len(columns) - 1} column(s) besides "{COLUMN}"; only it is read'
        )


def _split_column(value: Any) -> list:
    where = '"dataframe_split"'
    if not isinstance(value, dict):
        raise RequestError(400, f"{where} must be an object, not {_json_type(value)}")
    extra = [key for key in value if key not in ("columns", "data", "index")]
    if extra:
        raise RequestError(
            400, f'{where} may hold only "columns", "data" and "index"; it holds {len(extra)} more'
        )
    columns, data = value.get("columns"), value.get("data")
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise RequestError(400, f'{where}: "columns" must be an array of column names')
    if len(set(columns)) != len(columns):
        raise RequestError(400, f'{where}: "columns" names a column twice')
    _only_text(columns, where)
    if not isinstance(data, list):
        raise RequestError(400, f'{where}: "data" must be an array of rows, not {_json_type(data)}')
    if "index" in value and (
        not isinstance(value["index"], list) or len(value["index"]) != len(data)
    ):
        raise RequestError(400, f'{where}: "index" must be an array with one entry per row')
    column = []
    for i, row in enumerate(data):
        if not isinstance(row, list) or len(row) != 1:
            raise RequestError(
                400, f"{where}: row {i} must be an array of 1 value (one per column)"
            )
        column.append(row[0])
    return column


def _records_column(value: Any, kind: str) -> list:
    where = f'"{kind}"'
    if not isinstance(value, list):
        raise RequestError(400, f"{where} must be an array of records, not {_json_type(value)}")
    column = []
    for i, record in enumerate(value):
        if not isinstance(record, dict):
            raise RequestError(400, f"{where}: record {i} is {_json_type(record)}, not an object")
        _only_text(list(record), f"{where}: record {i}")
        column.append(record[COLUMN])
    return column


def _inputs_column(value: Any, kind: str) -> list:
    where = f'"{kind}"'
    if isinstance(value, dict):  # columnar: {"text": "one"} or {"text": [...]}
        _only_text(list(value), where)
        text = value[COLUMN]
        return [text] if isinstance(text, str) else _array(text, f'{where}: "{COLUMN}"')
    if isinstance(value, list):
        if value and all(isinstance(item, dict) for item in value):
            return _records_column(value, kind)
        if any(isinstance(item, dict) for item in value):
            raise RequestError(400, f"{where} mixes records and values; send one or the other")
        return value
    raise RequestError(
        400, f"{where} must be an object of columns or an array, not {_json_type(value)}"
    )


def _array(value: Any, where: str) -> list:
    if not isinstance(value, list):
        raise RequestError(
            400, f"{where} must be a string or an array of strings, not {_json_type(value)}"
        )
    return value
