"""A lean HTTP/1.1 load client for benchmarks and load tests.

General clients (httpx, aiohttp) spend about a millisecond of CPU on each request. On a
2-core machine where client and server share the cores, that cost caps what a server
appears to do: GET /health measured with httpx stopped near 560 req/s, below the
one-document throughput the serving targets ask for. This client keeps one keep-alive
connection per concurrent caller, writes prebuilt request bytes and reads answers by
their Content-Length, so nearly all the CPU is left to the server it measures.

It speaks only what the servers here answer: HTTP/1.1 responses with a Content-Length.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit


class LoadClientError(RuntimeError):
    """The server answered something this client cannot read, or an error status."""


@dataclass
class Answer:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def request_bytes(method: str, path: str, host: str, body: Any | None = None) -> bytes:
    """One HTTP/1.1 request, JSON body (if any) included, ready to write."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    payload = b""
    if body is not None:
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        lines += ["Content-Type: application/json", f"Content-Length: {len(payload)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + payload


def parse_head(head: bytes) -> tuple[int, int]:
    """Status and Content-Length of a response head (up to and including the blank line)."""
    lines = head.decode("latin-1").split("\r\n")
    try:
        status = int(lines[0].split(" ", 2)[1])
    except (IndexError, ValueError):
        raise LoadClientError(f"not an HTTP status line: {lines[0][:80]!r}") from None
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            return status, int(value.strip())
    raise LoadClientError("the response has no Content-Length")


class Connection:
    """One keep-alive connection; requests on it go one after another."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, url: str) -> Connection:
        parts = urlsplit(url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port or 80)
        return cls(reader, writer)

    async def send(self, raw: bytes) -> Answer:
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status, length = parse_head(head)
        return Answer(status, await self.reader.readexactly(length))

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


@dataclass
class LoadResult:
    """``n`` requests answered in ``seconds``; each one's latency, in seconds."""

    seconds: float
    latencies: list[float] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)

    @property
    def per_second(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0


async def run_load(
    url: str | Sequence[str],
    requests: Callable[[int], bytes],
    n: int,
    clients: int,
    keep_answers: bool = False,
    expect_status: int | None = 200,
) -> LoadResult:
    """Send requests ``requests(0)`` … ``requests(n - 1)`` from ``clients`` concurrent
    connections (each sends its next request when its last one is answered). Several
    URLs (servers) share the connections in turn."""
    urls = [url] if isinstance(url, str) else list(url)
    connections = [await Connection.open(urls[c % len(urls)]) for c in range(clients)]
    counter: Iterator[int] = iter(range(n))
    latencies: list[float] = [0.0] * n
    answers: list[Answer | None] = [None] * n

    async def caller(conn: Connection) -> None:
        for i in counter:
            raw = requests(i)
            start = time.perf_counter()
            answer = await conn.send(raw)
            latencies[i] = time.perf_counter() - start
            if expect_status is not None and answer.status != expect_status:
                raise LoadClientError(f"request {i} got {answer.status}: {answer.body[:200]!r}")
            if keep_answers:
                answers[i] = answer

    try:
        start = time.perf_counter()
        await asyncio.gather(*(caller(c) for c in connections))
        seconds = time.perf_counter() - start
    finally:
        for conn in connections:
            await conn.close()
    kept = [a for a in answers if a is not None] if keep_answers else []
    return LoadResult(seconds, latencies, kept)


def load(
    url: str | Sequence[str], requests: Callable[[int], bytes], n: int, clients: int, **kwargs
) -> LoadResult:
    """:func:`run_load` from synchronous code."""
    return asyncio.run(run_load(url, requests, n, clients, **kwargs))


def host_of(url: str) -> str:
    return urlsplit(url).netloc
