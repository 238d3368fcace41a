"""The UI server: the page, API Gateway proxy events for a Lambda handler, and forwarding."""

from __future__ import annotations

import base64
import errno
import http.client
import json
import logging
import socket
import urllib.error
import urllib.request

import boto3
import pytest

from fashion_pipeline_tools.api_client import ApiClient
from fashion_pipeline_tools import webui
from fashion_pipeline_tools.webui import LambdaBackend, PortInUse, ensure_port_free, RemoteBackend, UiServer, decode_proxy_result, json_too_deep, serve
from tests.fashion_pipeline_tools.web.fakes import MODEL, FakeHandler, RecordingServer, error, png_bytes, proxy


def fetch(url: str, *, method: str = "GET", body: bytes | None = None, headers: dict[str, str] | None = None):
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.headers, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


# -- event translation -----------------------------------------------------------------
def test_image_bodies_become_base64_proxy_events():
    image = png_bytes()
    handler = FakeHandler(detections=proxy(200, {"garments": []}))
    backend = LambdaBackend(handler, stage="local")
    status, headers, body = backend.call("POST", "/detections", {"min_confidence": ["0"], "label": ["a", "b"]},
                                         {"Content-Type": "image/png", "Accept": "application/json"}, image)
    assert (status, json.loads(body)) == (200, {"garments": []})
    [event] = handler.events
    assert event["resource"] == event["path"] == "/detections"
    assert event["httpMethod"] == "POST"
    assert event["isBase64Encoded"] is True and base64.b64decode(event["body"]) == image
    assert event["queryStringParameters"] == {"min_confidence": "0", "label": "b"}
    assert event["multiValueQueryStringParameters"] == {"min_confidence": ["0"], "label": ["a", "b"]}
    assert event["headers"]["Content-Type"] == "image/png" and event["headers"]["Accept"] == "application/json"
    assert event["multiValueHeaders"]["Content-Type"] == ["image/png"]
    context = event["requestContext"]
    assert context["stage"] == "local" and context["path"] == "/local/detections" and context["httpMethod"] == "POST"
    assert context["identity"]["sourceIp"] == "127.0.0.1" and context["requestId"]
    lambda_context = handler.contexts[0]
    assert lambda_context.aws_request_id and lambda_context.get_remaining_time_in_millis() > 0
    assert lambda_context.invoked_function_arn.startswith("arn:aws:lambda:")


def test_text_bodies_stay_text_and_empty_ones_are_null():
    backend = LambdaBackend(FakeHandler())
    event = backend.event("POST", "/detections", {"max_results": "3"}, {"Content-Type": "application/json"}, b'{"s3_key": "images/a.jpg"}')
    assert event["body"] == '{"s3_key": "images/a.jpg"}' and event["isBase64Encoded"] is False
    assert event["queryStringParameters"] == {"max_results": "3"}
    event = backend.event("GET", "/model", {}, {}, b"")
    assert event["body"] is None and event["isBase64Encoded"] is False
    assert event["queryStringParameters"] is None and event["multiValueQueryStringParameters"] is None
    binary = backend.event("POST", "/detections", {}, {"Content-Type": "text/plain"}, b"\xff\xd8\xff")
    assert binary["isBase64Encoded"] is True


def test_proxy_results_are_decoded():
    assert decode_proxy_result(proxy(200, b"\x89PNG")) == (200, {"Content-Type": "image/png"}, b"\x89PNG")
    status, headers, body = decode_proxy_result({"statusCode": 429, "multiValueHeaders": {"Retry-After": ["2"]}, "body": "{}"})
    assert (status, headers, body) == (429, {"Retry-After": "2"}, b"{}")
    assert decode_proxy_result({"oops": 1})[0] == 502


def test_a_failing_handler_is_a_502_like_api_gateway():
    def broken(event, context):
        raise RuntimeError("kaput")

    status, headers, body = LambdaBackend(broken).call("GET", "/model", {}, {}, b"")
    assert status == 502 and json.loads(body)["error"]["code"] == "lambda_error" and "kaput" in body.decode()


# -- the server ------------------------------------------------------------------------
@pytest.fixture
def handler():
    return FakeHandler()


@pytest.fixture
def server(handler):
    server = serve(LambdaBackend(handler), port=0)
    yield server
    server.shutdown()


def test_the_page_is_served_at_the_root(server):
    status, headers, body = fetch(server.url)
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b'id="view"' in body and b"./detections" in body
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert server.url.startswith("http://127.0.0.1:")


def test_json_png_and_503_answers_are_forwarded_unchanged(server, handler):
    image = png_bytes()
    answer = {"model": MODEL, "image": {"width": 96, "height": 64, "format": "png"}, "garments": []}
    drawn = png_bytes(colour=(1, 2, 3))

    def detections(event):
        if event["headers"].get("Accept") == "image/png":
            return proxy(200, drawn, {"X-Garment-Count": "0"})
        if event["queryStringParameters"] == {"min_confidence": "99"}:
            return error(503, "model_starting", "the model is STARTING", retry_after=60, model={**MODEL, "status": "STARTING"})
        return proxy(200, answer)

    handler.detections = detections
    status, headers, body = fetch(f"{server.url}detections?min_confidence=0", method="POST", body=image,
                                  headers={"Content-Type": "image/png", "Accept": "application/json"})
    assert status == 200 and headers["Content-Type"] == "application/json" and json.loads(body) == answer
    event = handler.events[-1]
    assert base64.b64decode(event["body"]) == image and event["queryStringParameters"] == {"min_confidence": "0"}

    status, headers, body = fetch(f"{server.url}detections", method="POST", body=image, headers={"Content-Type": "image/png", "Accept": "image/png"})
    assert (status, headers["Content-Type"], body) == (200, "image/png", drawn)
    assert headers["X-Garment-Count"] == "0"

    status, headers, body = fetch(f"{server.url}detections?min_confidence=99", method="POST", body=image, headers={"Content-Type": "image/png"})
    assert status == 503 and headers["Retry-After"] == "60"
    assert json.loads(body)["error"] == {"code": "model_starting", "message": "the model is STARTING", "retry_after": 60,
                                         "model": {**MODEL, "status": "STARTING"}}

    status, headers, body = fetch(f"{server.url}model")
    assert status == 200 and json.loads(body)["status"] == "RUNNING"
    status, headers, body = fetch(f"{server.url}nowhere")
    assert status == 404 and json.loads(body)["error"]["code"] == "not_found"


def test_requests_for_other_hosts_or_from_other_sites_are_refused(server, handler):
    port = server.port
    for headers in ({"Host": f"evil.example:{port}"}, {"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
        status, _, body = fetch(f"{server.url}model/start", method="POST", body=b"", headers=headers)
        assert status == 403 and json.loads(body)["error"]["code"] == "forbidden"
    status, _, _ = fetch(f"{server.url}model", headers={"Origin": f"http://localhost:{port}", "Sec-Fetch-Site": "same-origin"})
    assert status == 200
    assert [e["path"] for e in handler.events] == ["/model"]


def test_oversized_bodies_are_refused_before_reading(server):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.putrequest("POST", "/detections")
    connection.putheader("Content-Type", "image/jpeg")
    connection.putheader("Content-Length", str(50 * 1024 * 1024))
    connection.endheaders()
    answer = connection.getresponse()
    assert answer.status == 413 and json.loads(answer.read())["error"]["code"] == "image_too_large"
    connection.close()


def test_only_loopback_addresses():
    with pytest.raises(ValueError, match="loopback"):
        serve(LambdaBackend(FakeHandler()), host="0.0.0.0", port=0)


def test_remote_backend_signs_each_forwarded_call():
    image = png_bytes()

    def answer(recorded):
        return 429, {"Content-Type": "application/json", "Retry-After": "2", "X-Secret-Upstream": "no"}, b'{"error": {"code": "throttled", "message": "slow down"}}'

    session = boto3.Session(aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="s", region_name="eu-west-1")
    with RecordingServer(answer) as api:
        client = ApiClient(f"{api.url}/prod", session=session, unsigned=False)
        with serve(RemoteBackend(client), port=0) as server:
            status, headers, body = fetch(f"{server.url}detections?min_confidence=0", method="POST", body=image,
                                          headers={"Content-Type": "image/png", "Accept": "application/json", "Cookie": "session=1"})
    assert status == 429 and headers["Retry-After"] == "2" and "X-Secret-Upstream" not in headers
    assert json.loads(body)["error"]["code"] == "throttled"
    [recorded] = api.requests
    assert recorded.path == "/prod/detections?min_confidence=0" and recorded.body == image
    assert recorded.headers["content-type"] == "image/png" and recorded.headers["accept"] == "application/json"
    assert "/eu-west-1/execute-api/aws4_request" in recorded.headers["authorization"]
    assert "cookie" not in recorded.headers


def test_an_unreachable_api_is_a_502(server):
    with RecordingServer() as api:
        url = api.url
    with serve(RemoteBackend(ApiClient(url, timeout=2)), port=0) as proxy_server:
        status, _, body = fetch(f"{proxy_server.url}model")
    assert status == 502 and json.loads(body)["error"]["code"] == "api_unreachable"


# -- limits and failures -----------------------------------------------------------------
def test_the_default_limits():
    with serve(LambdaBackend(FakeHandler()), port=0) as server:
        assert (server.workers, server.max_queued, server.request_queue_size) == (16, 64, 128)
        assert (server.request_timeout, server.max_body_bytes, server.max_json_depth) == (10.0, 10 * 1024 * 1024, 64)
        pool = list(server._pool)
        assert len(pool) == 16 and all(thread.daemon and thread.is_alive() for thread in pool)
    for thread in pool:  # shutdown() ends the workers too
        thread.join(timeout=2)
        assert not thread.is_alive()
    with pytest.raises(ValueError, match="workers"):
        UiServer(("127.0.0.1", 0), LambdaBackend(FakeHandler()), workers=0)


def test_the_body_limit_is_a_parameter_and_checked_before_reading():
    with serve(LambdaBackend(FakeHandler()), port=0, max_body_bytes=1000) as server:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        connection.putrequest("POST", "/detections")
        connection.putheader("Content-Type", "image/png")
        connection.putheader("Content-Length", "1001")
        connection.endheaders()  # and no body
        answer = connection.getresponse()
        assert answer.status == 413 and "at most 1000 bytes" in json.loads(answer.read())["error"]["message"]
        connection.close()


def test_json_depth_is_measured_without_parsing():
    assert not json_too_deep(b"[" * 64 + b"]" * 64, 64)
    assert json_too_deep(b"[" * 65 + b"]" * 65, 64)
    assert json_too_deep(b"[" * 100_000, 64)  # unterminated: still refused, no RecursionError
    assert not json_too_deep(b'{"s3_key": "' + b"[{" * 500 + b'"}', 64)  # brackets in strings do not nest
    assert json_too_deep(b'["\\\\", ' + b"[" * 70 + b"]" * 71, 64)  # an escaped backslash ends its string
    assert not json_too_deep(b'"\\"' + b"[" * 100 + b'"', 64)  # an escaped quote does not


def test_an_unexpected_failure_is_a_500_in_json_without_the_traceback(caplog):
    class Broken:
        def __init__(self, answer=None):
            self.answer = answer

        def call(self, method, path, query, headers, body):
            if self.answer is None:
                raise RuntimeError("secret detail")
            return self.answer

    caplog.set_level(logging.ERROR, logger=webui.__name__)
    for backend in (Broken(), Broken((200, None, b"{}"))):  # raising, and a malformed answer that fails later
        caplog.clear()
        with serve(backend, port=0) as server:
            status, headers, body = fetch(f"{server.url}model")
            assert status == 500 and headers["Content-Type"] == "application/json"
            assert json.loads(body)["error"]["code"] == "internal_error"
            assert b"secret" not in body and b"Traceback" not in body
            status, _, _ = fetch(f"{server.url}")  # and it keeps serving
            assert status == 200
        assert any(record.exc_info for record in caplog.records)  # the traceback is in the log (stderr)


def test_a_busy_port_raises_port_in_use_naming_the_port():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(PortInUse, match=f"127.0.0.1:{port} is already in use") as caught:
            serve(LambdaBackend(FakeHandler()), port=port)
        assert isinstance(caught.value, OSError) and caught.value.errno == errno.EADDRINUSE and caught.value.port == port
        assert str(port) in caught.value.strerror  # what the CLI's OSError boundary prints
        with pytest.raises(PortInUse, match=f":{port} is already in use"):
            ensure_port_free(port)
    ensure_port_free(port)  # free again


# -- the runs' evaluation reports --------------------------------------------------------
class Reports:
    def __init__(self, objects):
        self.objects, self.read_keys = objects, []

    def read(self, key):
        self.read_keys.append(key)
        if key not in self.objects:
            raise LookupError(f"s3://artifacts/{key}: NoSuchKey")
        return self.objects[key]


RUN = "runs/demo/20261202T055357Z-fc3db064/evaluation/"


def test_a_runs_report_and_its_files_are_served_from_the_report_source(handler):
    reports = Reports({RUN + "index.html": b"<html>report</html>", RUN + "charts/f1.svg": b"<svg/>", RUN + "thumbs/a.jpg": b"\xff\xd8jpg"})
    server = serve(LambdaBackend(handler), port=0, reports=reports)
    try:
        base = server.url + "reports/demo/20261202T055357Z-fc3db064/"
        status, headers, body = fetch(base)
        assert (status, body) == (200, b"<html>report</html>") and headers["Content-Type"] == "text/html; charset=utf-8"
        assert "default-src 'none'" in headers["Content-Security-Policy"] and "script" not in headers["Content-Security-Policy"]
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert fetch(base + "charts/f1.svg")[1]["Content-Type"] == "image/svg+xml"
        assert fetch(base + "thumbs/a.jpg")[1]["Content-Type"] == "image/jpeg"
        status, headers, body = fetch(base + "compare.html")  # not written: a JSON 404 naming the object
        assert status == 404 and json.loads(body)["error"]["code"] == "not_found" and "NoSuchKey" in body.decode()
        for path in ("reports/demo/../x/index.html", "reports/demo/run/../../secret.html", "reports/de%20mo/r/", "reports/demo/r/run.py",
                     "reports/demo/r/a/b/c/d.html", "reports/demo/"):
            status, _, body = fetch(server.url + path)
            assert status == 404 and json.loads(body)["error"]["code"] == "not_found", path
        assert all(key.startswith("runs/demo/20261202T055357Z-fc3db064/evaluation/") for key in reports.read_keys)
        assert not [e for e in handler.events if e["path"].startswith("/reports")]  # never forwarded to the API
    finally:
        server.shutdown()


def test_without_a_report_source_the_links_answer_why(server):
    status, _, body = fetch(server.url + "reports/demo/20261202T055357Z-fc3db064/")
    assert status == 404 and "ArtifactsBucketName" in json.loads(body)["error"]["message"]
