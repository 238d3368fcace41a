"""The UI server against hostile raw requests (over sockets, no HTTP client to tidy them up):
every answer is JSON with the right status, a request that never finishes holds no worker
past the timeout, and the server keeps serving throughout."""

from __future__ import annotations

import base64
import http.client
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from fashion_pipeline_tools.webui import LISTEN_BACKLOG, LambdaBackend, serve
from tests.fashion_pipeline_tools.web.fakes import FakeHandler, error, proxy

TIMEOUT = 1.0  # the server's request timeout in these tests (10 s by default)


def parse_detection_request(event):
    """What the inference handler does with a JSON body: parse it, 400 when it is not JSON."""
    body = event["body"] or ""
    try:
        data = base64.b64decode(body) if event["isBase64Encoded"] else body
        json.loads(data)
    except (ValueError, RecursionError) as exc:
        return error(400, "invalid_json", f"the body is not JSON: {type(exc).__name__}")
    return proxy(200, {"garments": []})


@pytest.fixture
def handler():
    return FakeHandler(detections=parse_detection_request)


@pytest.fixture
def server(handler):
    server = serve(LambdaBackend(handler), port=0, request_timeout=TIMEOUT, workers=4, max_queued=8)
    yield server
    server.shutdown()


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


def parse(raw: bytes) -> Answer | None:
    if not raw:
        return None
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("iso-8859-1").split("\r\n")
    assert status_line.startswith("HTTP/1."), f"no status line: {raw[:200]!r}"
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Answer(int(status_line.split()[1]), headers, body)


def connect(server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT + 4)


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    return b"".join(chunks)


def raw(server, data: bytes) -> Answer | None:
    """Send ``data`` as it is and read the answer until the server closes the connection."""
    with connect(server) as sock:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):  # the server answered and closed before all of it arrived
            pass
        return parse(read_all(sock))


def host(server) -> bytes:
    return f"Host: 127.0.0.1:{server.port}\r\n".encode()


def assert_json_error(answer: Answer | None, status: int, code: str | None = None) -> dict:
    assert answer is not None, "no answer"
    assert answer.status == status, (answer.status, answer.body[:300])
    assert answer.headers["content-type"] == "application/json"
    assert int(answer.headers["content-length"]) == len(answer.body)
    document = answer.json()
    assert set(document) == {"error"} and isinstance(document["error"]["message"], str)
    assert b"Traceback" not in answer.body and b"<html" not in answer.body.lower()
    if code is not None:
        assert document["error"]["code"] == code
    return document["error"]


def assert_still_serving(server) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        connection.request("GET", "/model")
        answer = connection.getresponse()
        assert answer.status == 200 and json.loads(answer.read())["status"] == "RUNNING"
    finally:
        connection.close()


def request(server, method: bytes, path: bytes, *, headers: bytes = b"", body: bytes = b"", content_type: bytes = b"application/json") -> bytes:
    head = method + b" " + path + b" HTTP/1.1\r\n" + host(server)
    if body or method == b"POST":
        head += b"Content-Type: " + content_type + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n"
    return head + headers + b"\r\n" + body


# name -> (request bytes of a server, status, error code)
HOSTILE = {
    "unknown method": (lambda s: request(s, b"FROB", b"/model"), 501, "method_not_implemented"),
    "TRACE": (lambda s: request(s, b"TRACE", b"/model"), 405, "method_not_allowed"),
    "HEAD of an API path": (lambda s: request(s, b"HEAD", b"/model"), 405, None),
    "70,000-character URL": (lambda s: request(s, b"GET", b"/" + b"a" * 70_000), 414, "uri_too_long"),
    "200 headers": (lambda s: request(s, b"GET", b"/model", headers=b"".join(b"X-H%d: v\r\n" % n for n in range(200))),
                    431, "headers_too_large"),
    "80 KB header": (lambda s: request(s, b"GET", b"/model", headers=b"X-Big: " + b"b" * 80_000 + b"\r\n"), 431, "headers_too_large"),
    "Content-Length over the limit": (lambda s: b"POST /detections HTTP/1.1\r\n" + host(s)
                                      + b"Content-Type: image/png\r\nContent-Length: 52428800\r\n\r\n" + b"\x89PNG" * 1000,
                                      413, "image_too_large"),
    "negative Content-Length": (lambda s: b"POST /detections HTTP/1.1\r\n" + host(s) + b"Content-Length: -5\r\n\r\n", 400, "invalid_request"),
    "Content-Length not a number": (lambda s: b"POST /detections HTTP/1.1\r\n" + host(s) + b"Content-Length: ten\r\n\r\n",
                                    400, "invalid_request"),
    "chunked body": (lambda s: b"POST /detections HTTP/1.1\r\n" + host(s) + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                     411, "length_required"),
    "100,000-deep JSON": (lambda s: request(s, b"POST", b"/detections", body=b"[" * 100_000 + b"]" * 100_000), 400, "invalid_request"),
    "100,000-deep JSON without a Content-Type": (lambda s: b"POST /detections HTTP/1.1\r\n" + host(s)
                                                 + b"Content-Length: 100000\r\n\r\n" + b'{"a":' * 20_000, 400, "invalid_request"),
    "invalid JSON": (lambda s: request(s, b"POST", b"/detections", body=b'{"s3_key": '), 400, "invalid_json"),
    "non-UTF-8 JSON body": (lambda s: request(s, b"POST", b"/detections", body=b'{"s3_key": "\xff\xfe\xc3"}'), 400, "invalid_json"),
    "non-UTF-8 path and header": (lambda s: request(s, b"GET", b"/mod\xff\xfeel", headers=b"X-Odd: \xff\x80\r\n"), 404, "not_found"),
    "garbage request line": (lambda s: b"\x00\x01\x02garbage\xff \x7f\r\n\r\n", 400, "invalid_request"),
    "one word": (lambda s: b"GARBAGE\r\n\r\n", 400, "invalid_request"),
    "HTTP/0.9 request": (lambda s: b"GET /model\r\n\r\n", 400, "invalid_request"),
    "four words": (lambda s: b"GET /model HTTP/1.1 extra\r\n\r\n", 400, "invalid_request"),
    "bad version": (lambda s: b"GET /model HTTP/x.y\r\n\r\n", 400, "invalid_request"),
    "HTTP/3.0": (lambda s: b"GET /model HTTP/3.0\r\n\r\n", 505, "http_version_not_supported"),
    "foreign Host": (lambda s: b"POST /model/start HTTP/1.1\r\nHost: evil.example\r\nContent-Length: 0\r\n\r\n", 403, "forbidden"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_each_hostile_request_gets_a_json_error_and_the_server_keeps_serving(server, handler, name):
    build, status, code = HOSTILE[name]
    answer = raw(server, build(server))
    if name.startswith("HEAD"):  # a HEAD answer has the headers of the JSON error, no body
        assert answer is not None and answer.status == 405 and answer.headers["content-type"] == "application/json"
        assert answer.body == b"" and int(answer.headers["content-length"]) > 0
    else:
        assert_json_error(answer, status, code)
    assert_still_serving(server)
    if code in ("image_too_large", "uri_too_long", "headers_too_large", "length_required", "method_not_implemented"):
        assert not handler.detection_events()  # refused before the backend


def test_a_body_that_never_comes_holds_no_worker_and_is_answered_408(server):
    hung = []
    for _ in range(2):
        sock = connect(server)
        sock.sendall(b"POST /detections HTTP/1.1\r\n" + host(server) + b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
        hung.append(sock)
    started = time.monotonic()
    assert_still_serving(server)  # meanwhile, at once
    assert time.monotonic() - started < TIMEOUT / 2
    for sock in hung:
        with sock:
            assert_json_error(parse(read_all(sock)), 408, "request_timeout")
    assert time.monotonic() - started < TIMEOUT + 2
    assert_still_serving(server)


def test_headers_that_never_end_are_dropped_within_the_timeout(server):
    started = time.monotonic()
    with connect(server) as sock:
        sock.sendall(b"GET /model HTTP/1.1\r\n" + host(server))
        assert_still_serving(server)
        answer = read_all(sock)
    assert time.monotonic() - started < TIMEOUT + 2
    assert answer == b"" or parse(answer).headers["content-type"] == "application/json"
    assert_still_serving(server)


def test_a_connection_that_sends_nothing_or_closes_at_once_is_harmless(server):
    socket.create_connection(("127.0.0.1", server.port)).close()
    with connect(server) as sock:
        sock.shutdown(socket.SHUT_WR)
        assert read_all(sock) == b""
    assert_still_serving(server)


def test_beyond_the_queue_connections_get_a_503_with_retry_after(handler):
    with serve(LambdaBackend(handler), port=0, request_timeout=TIMEOUT, workers=1, max_queued=1) as server:
        holder = connect(server)  # takes the only worker until its body times out
        holder.sendall(b"POST /detections HTTP/1.1\r\n" + host(server) + b"Content-Length: 10\r\n\r\n")
        time.sleep(0.2)
        waiting = connect(server)  # waits in the queue
        waiting.sendall(b"GET /model HTTP/1.1\r\n" + host(server) + b"\r\n")
        time.sleep(0.2)
        rejected = raw(server, b"GET /model HTTP/1.1\r\n" + host(server) + b"\r\n")
        assert_json_error(rejected, 503, "server_busy")
        assert rejected.headers["retry-after"] == "1"
        with holder:
            assert_json_error(parse(read_all(holder)), 408)
        with waiting:
            assert parse(read_all(waiting)).status == 200
        assert_still_serving(server)


def test_32_parallel_clients_all_get_answers(handler):
    assert LISTEN_BACKLOG >= 128
    with serve(LambdaBackend(handler), port=0) as server:
        assert server.request_queue_size >= 128 and server.workers >= 4
        barrier = threading.Barrier(32)

        def client(n):
            barrier.wait(timeout=10)
            connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
            try:
                if n % 2:
                    connection.request("POST", "/detections", body=b'{"s3_key": "images/a.jpg"}', headers={"Content-Type": "application/json"})
                else:
                    connection.request("GET", "/model")
                answer = connection.getresponse()
                return answer.status, json.loads(answer.read())
            finally:
                connection.close()

        with ThreadPoolExecutor(32) as pool:
            answers = list(pool.map(client, range(32)))
    assert [status for status, _ in answers] == [200] * 32
