"""The lean load client that benchmarks and load tests use, against a real socket."""

from __future__ import annotations

import asyncio
import json

import pytest

from rnnops.testing.http_load import (
    LoadClientError,
    parse_head,
    request_bytes,
    run_load,
)


def test_request_bytes_carry_the_json_body_and_its_length():
    raw = request_bytes("POST", "/predict", "127.0.0.1:80", {"text": ["é"]})
    head, body = raw.split(b"\r\n\r\n", 1)
    assert head.startswith(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:80")
    assert f"Content-Length: {len(body)}".encode() in head
    assert json.loads(body) == {"text": ["é"]}


def test_parse_head_reads_status_and_length_and_refuses_the_rest():
    assert parse_head(b"HTTP/1.1 413 Too Large\r\ncontent-length: 12\r\n\r\n") == (413, 12)
    with pytest.raises(LoadClientError, match="Content-Length"):
        parse_head(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
    with pytest.raises(LoadClientError, match="status line"):
        parse_head(b"garbage\r\n\r\n")


async def _echo_server():
    """Answers each request on a connection with the number in its path, keep-alive."""

    async def handle(reader, writer):
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                break
            path = head.split(b" ")[1].decode()
            body = json.dumps({"n": int(path.strip("/"))}).encode()
            status = b"200 OK" if not path.endswith("7/") else b"500 Oops"
            writer.write(
                b"HTTP/1.1 "
                + status
                + b"\r\nContent-Length: "
                + str(len(body)).encode()
                + b"\r\n\r\n"
                + body
            )
            await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


def test_run_load_answers_every_request_in_its_own_slot():
    async def go():
        server = await _echo_server()
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        try:
            ok = await run_load(
                url, lambda i: request_bytes("GET", f"/{i}", "x"), 40, 4, keep_answers=True
            )
            with pytest.raises(LoadClientError, match="500"):
                await run_load(url, lambda i: request_bytes("GET", f"/{i}7/", "x"), 5, 2)
        finally:
            server.close()
            await server.wait_closed()
        return ok

    result = asyncio.run(go())
    assert [a.json()["n"] for a in result.answers] == list(range(40))
    assert len(result.latencies) == 40 and all(t > 0 for t in result.latencies)
    assert result.per_second > 0
