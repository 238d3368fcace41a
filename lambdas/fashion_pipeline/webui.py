"""A local web server for the browser UI: the page at ``/``, every other path to a backend.

The page (``fashion_pipeline/web/index.html``) calls the API with relative URLs
(``./detections``, ``./model``), so the server answers those paths itself by forwarding
them to one of two backends:

* ``RemoteBackend``: the deployed API, each call signed (SigV4) or with an API key by an
  ``ApiClient``; the browser never sees credentials;
* ``LambdaBackend``: the inference Lambda's handler, called in this process with the API
  Gateway (REST, proxy) event the request would have become (local mode).

The server binds to the loopback interface only, and refuses requests whose Host is not its
own or that come from another site's page (DNS rebinding, cross-site POSTs): a page on the
internet must not be able to spend the user's credentials through it.
"""

from __future__ import annotations

import base64
import http.server
import json
import logging
import threading
import time
import uuid
from datetime import datetime, timezone
from importlib import resources
from typing import Any, Callable, Mapping, Protocol
from urllib.parse import parse_qs, urlsplit

from .api_client import ApiClient, ApiClientError, ConnectionFailed, CredentialsError

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit for REST APIs
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
FORWARDED_REQUEST_HEADERS = ("content-type", "accept")
FORWARDED_RESPONSE_HEADERS = (
    "content-type", "retry-after", "vary", "cache-control", "x-garment-count", "x-render-scale", "x-amzn-requestid",
)
PAGE_HEADERS = {
    "Content-Type": "text/html; charset=utf-8",
    "Cache-Control": "no-store",
    # The page is self-contained: inline script and style, images from blob: URLs, API calls to itself.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' blob: data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

Headers = dict[str, str]
Query = Mapping[str, "str | list[str]"]


def page() -> bytes:
    """The UI: one self-contained HTML file."""
    return resources.files("fashion_pipeline").joinpath("web/index.html").read_bytes()


def error_body(code: str, message: str, **extra: Any) -> bytes:
    """The API's error shape, for answers this server gives itself."""
    return json.dumps({"error": {"code": code, "message": message, **extra}}).encode()


class Backend(Protocol):
    def call(self, method: str, path: str, query: Query, headers: Headers, body: bytes) -> tuple[int, Headers, bytes]:
        """Answer one request: ``(status, headers, body)``."""
        ...


class RemoteBackend:
    """The deployed API, through an ``ApiClient`` (which signs or adds the API key)."""

    def __init__(self, client: ApiClient) -> None:
        self.client = client

    def call(self, method: str, path: str, query: Query, headers: Headers, body: bytes) -> tuple[int, Headers, bytes]:
        answer = self.client.request(method, path, body=body, headers=headers, query=dict(query))
        return answer.status, answer.headers, answer.body


class LocalContext:
    """The parts of a Lambda context object that handlers (and Powertools) read."""

    def __init__(self, function_name: str, region: str = "us-east-1", account: str = "123456789012", timeout_seconds: int = 29) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = 1024
        self.invoked_function_arn = f"arn:aws:lambda:{region}:{account}:function:{function_name}"
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class LambdaBackend:
    """A Lambda proxy handler called in this process, as API Gateway (REST) would call it.

    Calls are serialised: like one Lambda execution environment, the handler sees one event
    at a time (its module state is not shared between concurrent invocations).
    """

    def __init__(
        self,
        handler: Callable[[dict[str, Any], Any], Any],
        stage: str = "local",
        *,
        function_name: str = "fashion-pipeline-inference",
        source_ip: str = "127.0.0.1",
    ) -> None:
        self.handler = handler
        self.stage = stage
        self.function_name = function_name
        self.source_ip = source_ip
        self._lock = threading.Lock()

    def event(self, method: str, path: str, query: Query, headers: Headers, body: bytes) -> dict[str, Any]:
        """The API Gateway REST (v1) proxy event of a request."""
        multi_query = {key: list(value) if isinstance(value, (list, tuple)) else [str(value)] for key, value in query.items()}
        multi_query = {key: values for key, values in multi_query.items() if values}
        all_headers = {"Host": "localhost", "X-Forwarded-For": self.source_ip, "X-Forwarded-Proto": "http", **headers}
        content_type = next((v for k, v in all_headers.items() if k.lower() == "content-type"), "")
        user_agent = next((v for k, v in all_headers.items() if k.lower() == "user-agent"), "")
        text, encoded = _event_body(body, content_type)
        now = datetime.now(timezone.utc)
        request_id = str(uuid.uuid4())
        return {
            "resource": path,
            "path": path,
            "httpMethod": method.upper(),
            "headers": all_headers,
            "multiValueHeaders": {name: [value] for name, value in all_headers.items()},
            "queryStringParameters": {key: values[-1] for key, values in multi_query.items()} or None,
            "multiValueQueryStringParameters": multi_query or None,
            "pathParameters": None,
            "stageVariables": None,
            "requestContext": {
                "accountId": "123456789012",
                "apiId": "local",
                "resourceId": "local",
                "resourcePath": path,
                "httpMethod": method.upper(),
                "path": f"/{self.stage}{path}",
                "stage": self.stage,
                "protocol": "HTTP/1.1",
                "requestId": request_id,
                "extendedRequestId": request_id,
                "requestTime": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
                "requestTimeEpoch": int(now.timestamp() * 1000),
                "domainName": "localhost",
                "identity": {"sourceIp": self.source_ip, "userAgent": user_agent, "accessKey": None, "user": None, "userArn": None},
            },
            "body": text,
            "isBase64Encoded": encoded,
        }

    def call(self, method: str, path: str, query: Query, headers: Headers, body: bytes) -> tuple[int, Headers, bytes]:
        event = self.event(method, path, query, headers, body)
        with self._lock:
            try:
                result = self.handler(event, LocalContext(self.function_name))
            except Exception as exc:  # API Gateway answers 502 when the function fails
                logger.exception("the Lambda handler raised")
                return 502, {"Content-Type": "application/json"}, error_body(
                    "lambda_error", f"the inference function failed: {type(exc).__name__}: {exc}"
                )
        return decode_proxy_result(result)


def _event_body(body: bytes, content_type: str) -> tuple[str | None, bool]:
    """The event's ``body`` and ``isBase64Encoded``: images (the API's binary types) as base64."""
    if not body:
        return None, False
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type.startswith("image/") or media_type == "application/octet-stream":
        return base64.b64encode(body).decode("ascii"), True
    try:
        return body.decode("utf-8"), False
    except UnicodeDecodeError:
        return base64.b64encode(body).decode("ascii"), True


def decode_proxy_result(result: Any) -> tuple[int, Headers, bytes]:
    """``(status, headers, body)`` of a Lambda proxy result (502 when it is not one, as on AWS)."""
    if not isinstance(result, dict) or not isinstance(result.get("statusCode"), int):
        return 502, {"Content-Type": "application/json"}, error_body("lambda_error", "the inference function returned a malformed proxy response")
    headers: Headers = {}
    for name, value in (result.get("headers") or {}).items():
        headers[name] = str(value)
    for name, values in (result.get("multiValueHeaders") or {}).items():
        if values:
            headers[name] = ", ".join(str(v) for v in values)
    body = result.get("body") or ""
    if result.get("isBase64Encoded"):
        data = base64.b64decode(body)
    else:
        data = body.encode("utf-8") if isinstance(body, str) else bytes(body)
    return int(result["statusCode"]), headers, data


class UiServer(http.server.ThreadingHTTPServer):
    """The UI server; ``serve()`` starts it in a daemon thread."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], backend: Backend, *, log: Callable[[str], None] | None = None) -> None:
        self.backend = backend
        self.log = log
        self.page = page()
        self.thread: threading.Thread | None = None
        super().__init__(address, _Handler)
        host, port = self.server_address[:2]
        self.port = int(port)
        shown = f"[{host}]" if ":" in str(host) else host
        self.url = f"http://{shown}:{self.port}/"
        self.allowed_hosts = {f"{name}:{self.port}" for name in ("127.0.0.1", "localhost", "[::1]")}
        self.allowed_origins = {f"http://{name}" for name in self.allowed_hosts}

    def shutdown(self) -> None:
        """Stop serving, close the socket and wait for the serving thread."""
        super().shutdown()
        self.server_close()
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join(timeout=5)

    def __enter__(self) -> UiServer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()


def serve(backend: Backend, host: str = "127.0.0.1", port: int = 8000, *, log: Callable[[str], None] | None = None) -> UiServer:
    """Serve the UI and ``backend`` on ``host:port`` (port 0: any free port) in a daemon thread.

    Returns the running server: ``.url`` is its address, ``.shutdown()`` stops it. Only a
    loopback host is accepted.
    """
    if host not in LOOPBACK_HOSTS:
        raise ValueError(f"the UI server binds to the loopback interface only, not {host!r}")
    if host == "localhost":
        host = "127.0.0.1"
    server_class = UiServer
    if host == "::1":
        import socket

        server_class = type("UiServer6", (UiServer,), {"address_family": socket.AF_INET6})
    server = server_class((host, port), backend, log=log)
    # A short poll interval: shutdown() returns within it (tests start and stop many servers).
    server.thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"webui:{server.port}", daemon=True)
    server.thread.start()
    return server


class _Handler(http.server.BaseHTTPRequestHandler):
    server: UiServer
    server_version = "fashion-pipeline-ui"

    def version_string(self) -> str:
        return self.server_version

    def do_GET(self) -> None:
        if urlsplit(self.path).path in ("/", "/index.html"):
            if self._refused():
                return
            self._send(200, PAGE_HEADERS, self.server.page)
        else:
            self._forward()

    def do_HEAD(self) -> None:
        if urlsplit(self.path).path in ("/", "/index.html") and not self._refused():
            self._send(200, PAGE_HEADERS, b"", length=len(self.server.page))
        else:
            self._send(405, {"Content-Type": "application/json"}, error_body("method_not_allowed", "HEAD is answered for the page only"))

    do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = lambda self: self._forward()  # noqa: E731

    # -- internals ---------------------------------------------------------------------
    def _refused(self) -> bool:
        """Answer 403 to requests from other sites or under another host name."""
        host = (self.headers.get("Host") or "").lower()
        if host not in self.server.allowed_hosts:
            self._error(403, "forbidden", f"this server answers requests for {self.server.url} only (Host {host or 'missing'})")
            return True
        origin = self.headers.get("Origin")
        site = (self.headers.get("Sec-Fetch-Site") or "").lower()
        if (origin and origin.lower() not in self.server.allowed_origins) or site in ("cross-site", "same-site"):
            self._error(403, "forbidden", "requests from other sites are refused")
            return True
        return False

    def _forward(self) -> None:
        if self._refused():
            return
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            self._error(411, "length_required", "send the body with a Content-Length")
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            self._error(400, "invalid_request", "invalid Content-Length")
            return
        if length > MAX_BODY_BYTES:
            self.close_connection = True  # the body stays unread
            self._error(413, "image_too_large", f"the request is {length} bytes; the API accepts at most {MAX_BODY_BYTES} bytes (10 MB)")
            return
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        query = parse_qs(parts.query, keep_blank_values=True)
        headers = {name.title(): value for name in FORWARDED_REQUEST_HEADERS if (value := self.headers.get(name))}
        try:
            status, answer_headers, answer = self.server.backend.call(self.command, parts.path, query, headers, body)
        except CredentialsError as exc:
            self._error(500, "no_credentials", str(exc))
            return
        except ConnectionFailed as exc:
            self._error(502, "api_unreachable", str(exc))
            return
        except ApiClientError as exc:
            self._error(500, "client_error", str(exc))
            return
        except Exception:
            logger.exception("backend failed for %s %s", self.command, parts.path)
            self._error(500, "internal_error", "the local server failed to forward the request; see its log")
            return
        forwarded = {name: value for name, value in answer_headers.items() if name.lower() in FORWARDED_RESPONSE_HEADERS}
        self._send(status, forwarded, answer)

    def _error(self, status: int, code: str, message: str) -> None:
        self._send(status, {"Content-Type": "application/json"}, error_body(code, message))

    def _send(self, status: int, headers: Mapping[str, str], body: bytes, *, length: int | None = None) -> None:
        try:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body) if length is None else length))
            self.end_headers()
            if body:
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the browser went away
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        line = f"{self.address_string()} {format % args}"
        if self.server.log is not None:
            self.server.log(line)
        else:
            logger.debug(line)
