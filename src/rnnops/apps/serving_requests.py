"""Request validation for the serving app: pure functions, no server needed.

They turn a request into a list of documents or a :class:`RequestError` with a 4xx
status and a message that never echoes the input; :func:`strict_json` writes every body
the app sends (no NaN, no Infinity).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

EXAMPLE = '{"text": "one document"} or {"text": ["document 1", "document 2"]}'


class RequestError(Exception):
    """A request the server refuses: an HTTP status and a message safe to send back."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def check_content_type(value: str | None) -> None:
    """Accept ``application/json`` (UTF-8, the only encoding JSON allows); else 415."""
    media, _, params = (value or "").partition(";")
    if media.strip().lower() != "application/json":
        raise RequestError(415, "Content-Type must be application/json")
    for param in params.split(";"):
        key, _, val = param.partition("=")
        if key.strip().lower() == "charset" and val.strip().strip('"').lower() not in (
            "utf-8",
            "utf8",
        ):
            raise RequestError(415, "JSON request bodies must be UTF-8 (charset=utf-8)")


def check_content_encoding(value: str | None) -> None:
    """Refuse a compressed body (415): the limits and the parser read the bytes as sent."""
    if value is not None and value.strip().lower() not in ("", "identity"):
        raise RequestError(415, "Content-Encoding is not supported; send the body uncompressed")


def check_declared_length(value: str | None, max_body_bytes: int) -> None:
    """Refuse a body whose declared ``Content-Length`` is over the limit before reading it."""
    if value is None:
        return
    digits = value.strip()
    if not (digits.isascii() and digits.isdigit()):
        raise RequestError(400, "Content-Length is not a non-negative whole number")
    declared = int(digits)
    if declared > max_body_bytes:
        raise RequestError(
            413, f"the request body is {declared} bytes; the limit is {max_body_bytes} bytes"
        )


def _json_type(value: Any) -> str:
    """The JSON name of a decoded value's type (the message names types, never values)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


class _AmbiguousJSON(ValueError):
    """JSON that parses, but that different parsers read differently (or not at all)."""


def _reject_constant(name: str) -> Any:
    raise _AmbiguousJSON(f"{name} is not allowed in JSON")


# Longer integers are refused while parsing: no field takes a number, and Python's own
# limit (4,300 digits) would answer with advice meant for the server.
MAX_INT_DIGITS = 100


def _bounded_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise _AmbiguousJSON(f"a number in the body has more than {MAX_INT_DIGITS} digits")
    return int(digits)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict:
    """An object whose keys are all different: parsers disagree on which duplicate wins."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))
        named = f'"{dup}"' if dup == "text" else "a key"
        raise _AmbiguousJSON(f"an object in the body repeats {named}; each key may appear once")
    return obj


def _unencodable(text: str) -> bool:
    """Whether ``text`` holds a lone surrogate (a ``\\ud800`` escape without its pair),
    which is not Unicode text and which UTF-8 cannot encode."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _positions(indices: Sequence[int], limit: int = 5) -> str:
    shown = ", ".join(str(i) for i in indices[:limit])
    return shown + (f" and {len(indices) - limit} more" if len(indices) > limit else "")


def decode_json_body(body: bytes, example: str = EXAMPLE) -> Any:
    """The decoded JSON of a request body, or a :class:`RequestError` (400).

    Strict: UTF-8 without a byte order mark, no NaN / Infinity, no repeated key, no
    integer of more than ``MAX_INT_DIGITS`` digits. Messages never quote the body.
    """
    if not body.strip():
        raise RequestError(400, f"the request body is empty; send a JSON object such as {example}")
    if body.startswith((b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")):
        raise RequestError(
            400, "the request body starts with a byte order mark (BOM); send UTF-8 without one"
        )
    try:
        decoded = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestError(
            400, f"the request body is not valid UTF-8 (byte {exc.start} cannot be decoded)"
        ) from None
    try:
        return json.loads(
            decoded,
            parse_constant=_reject_constant,
            parse_int=_bounded_int,
            object_pairs_hook=_unique_keys,
        )
    except json.JSONDecodeError as exc:
        raise RequestError(
            400,
            f"the request body is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
        ) from None
    except _AmbiguousJSON as exc:  # NaN / Infinity, duplicate keys, huge integers
        raise RequestError(400, f"the request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise RequestError(400, "the request body is nested too deeply") from None
    except ValueError:  # any other value the parser cannot build
        raise RequestError(400, "the request body is not valid JSON") from None


def require_strings(values: list, rule: str, noun: str) -> None:
    """400 naming the first value that is not a string (``rule``; ``noun``: row, item)."""
    bad = [i for i, item in enumerate(values) if not isinstance(item, str)]
    if bad:
        raise RequestError(
            400,
            f"{rule}; {noun} {bad[0]} is {_json_type(values[bad[0]])}"
            + (f" ({noun}s {_positions(bad)} are not strings)" if len(bad) > 1 else ""),
        )


def check_count(count: int, max_documents: int) -> None:
    """413 for more documents than one request may carry."""
    if count > max_documents:
        raise RequestError(
            413,
            f"{count} documents in one request; the limit is {max_documents} "
            "(split them over several requests)",
        )


def check_documents(documents: list[str]) -> list[str]:
    """400 for a document that is not Unicode text or holds nothing to read."""
    broken = [i for i, doc in enumerate(documents) if _unencodable(doc)]
    if broken:
        raise RequestError(
            400,
            f"document {_positions(broken)} holds an unpaired surrogate escape "
            "(\\ud800-\\udfff without its pair), which is not Unicode text",
        )
    empty = [i for i, doc in enumerate(documents) if not doc.strip()]
    if empty:
        raise RequestError(
            400,
            f"document {_positions(empty)} is empty or only whitespace"
            if len(empty) == 1
            else f"documents {_positions(empty)} are empty or only whitespace",
        )
    return documents


def parse_documents(body: bytes, max_documents: int) -> list[str]:
    """The documents of a ``/predict`` body, or a :class:`RequestError` (400 or 413).

    The body is a JSON object with one field, ``text``: a string (one document) or an
    array of strings (several). Messages name positions and types, never the input.
    """
    payload = decode_json_body(body)
    if not isinstance(payload, dict):
        raise RequestError(
            400, f"the body must be a JSON object such as {EXAMPLE}, not {_json_type(payload)}"
        )
    if "text" not in payload:
        raise RequestError(400, f'the body has no "text" field; send {EXAMPLE}')
    if len(payload) > 1:
        raise RequestError(
            400, f'the body has {len(payload) - 1} field(s) besides "text"; only "text" is accepted'
        )
    text = payload["text"]
    if isinstance(text, str):
        documents = [text]
    elif isinstance(text, list):
        if not text:
            raise RequestError(400, '"text" is an empty array; send at least one document')
        check_count(len(text), max_documents)
        require_strings(text, '"text" must be an array of strings', "item")
        documents = text
    else:
        raise RequestError(
            400, f'"text" must be a string or an array of strings, not {_json_type(text)}'
        )
    return check_documents(documents)


def strict_json(content: Any) -> bytes:
    """JSON that every parser accepts: NaN and Infinity raise instead of being written."""
    return json.dumps(content, allow_nan=False, separators=(",", ":")).encode("utf-8")
