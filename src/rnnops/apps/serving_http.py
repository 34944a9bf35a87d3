"""The HTTP layer under the app: uvicorn's h11 protocol answering what it refuses with
strict JSON, and log lines bounded so a hostile request cannot flood the log."""

from __future__ import annotations

import logging
from typing import Any

from rnnops.apps.serving_requests import strict_json

# What a request refused by the HTTP parser (h11, before the app sees it) is told: h11's
# own messages quote the offending bytes, so each known kind gets a fixed sentence.
_H11_ERRORS = (
    ("receive buffer too long", "the request line and headers are too large"),
    ("content-length", "Content-Length is missing, repeated or not a whole number"),
    ("transfer-encoding", "only Transfer-Encoding: chunked is supported"),
    ("illegal chunk", "the chunked body is malformed"),
    ("chunk", "the chunked body is malformed"),
    ("request line", "the request line is malformed (expected: METHOD /path HTTP/1.1)"),
    ("header", "a header line is malformed"),
    ("host", "the request has no Host header (HTTP/1.1 requires one)"),
)


def http_error_body(exc: BaseException | None) -> tuple[int, bytes]:
    """Status and strict-JSON body for a request the HTTP parser refused.

    Always a 4xx: h11 hints 501 for an unknown Transfer-Encoding, which is the client's
    choice to change, so it is answered as a 400.
    """
    hint = getattr(exc, "error_status_hint", 400)
    status = hint if isinstance(hint, int) and 400 <= hint < 500 else 400
    text = str(exc or "").lower()
    reason = next((m for key, m in _H11_ERRORS if key in text), "the request is not valid HTTP/1.1")
    if status == 431:
        reason = "the request line and headers are too large"
    return status, strict_json({"error": f"invalid HTTP request: {reason}", "status": status})


_protocol_class: type | None = None


def json_errors_h11_protocol() -> type:
    """uvicorn's h11 protocol, answering the requests h11 refuses with strict JSON.

    uvicorn answers those (malformed request line or headers, a bad Content-Length or
    chunk, headers over 16 KiB) itself with a text/plain 400 before the app runs; this
    subclass keeps uvicorn's handling and replaces only that answer. A request target that
    is not ASCII, which uvicorn does not catch, gets the same answer instead of a dropped
    connection.
    """
    global _protocol_class
    if _protocol_class is not None:
        return _protocol_class
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class JSONErrorsH11Protocol(H11Protocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._refused: BaseException | None = None
            next_event = self.conn.next_event

            def recording_next_event() -> Any:
                try:
                    return next_event()
                except h11.RemoteProtocolError as exc:
                    self._refused = exc
                    raise

            self.conn.next_event = recording_next_event

        def handle_events(self) -> None:
            try:
                super().handle_events()
            except UnicodeDecodeError as exc:  # a non-ASCII request target
                self._refused = exc
                self.send_400_response("")

        def send_400_response(self, msg: str) -> None:
            status, body = http_error_body(self._refused)
            self.logger.warning("refused a malformed HTTP request (%d)", status)
            if self.conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
                self.transport.close()  # an answer is already on its way: only close
                return
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ]
            try:
                self.transport.write(
                    self.conn.send(h11.Response(status_code=status, headers=headers))
                )
                self.transport.write(self.conn.send(h11.Data(data=body)))
                self.transport.write(self.conn.send(h11.EndOfMessage()))
            except h11.LocalProtocolError:
                pass  # the connection is beyond answering; closing it is all that is left
            self.transport.close()

    _protocol_class = JSONErrorsH11Protocol
    return _protocol_class


MAX_LOG_CHARS = 2000


class BoundedLogFilter(logging.Filter):
    """Cut every log record to ``MAX_LOG_CHARS`` (tracebacks included): a huge or hostile
    request cannot flood the log through an error message."""

    def __init__(self, limit: int = MAX_LOG_CHARS) -> None:
        super().__init__()
        self.limit = limit

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text and len(record.exc_text) > self.limit:
            record.exc_text = record.exc_text[-self.limit :]
        if len(message) > self.limit:
            record.msg, record.args = message[: self.limit] + " …[truncated]", None
        return True


def bound_log_lines(limit: int = MAX_LOG_CHARS) -> None:
    """Install :class:`BoundedLogFilter` on the root and uvicorn handlers."""
    for name in ("", "uvicorn", "uvicorn.error", "uvicorn.access"):
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, BoundedLogFilter) for f in handler.filters):
                handler.addFilter(BoundedLogFilter(limit))
