"""A local web server for the browser UI: the page at ``/``, every other path to a backend.

The page (``fashion_pipeline_tools/web/index.html``) calls the API with relative URLs
(``./detections``, ``./model``), so the server answers those paths itself by forwarding
them to one of two backends:

* ``RemoteBackend``: the deployed API, each call signed (SigV4) or with an API key by an
  ``ApiClient``; the browser never sees credentials;
* ``LambdaBackend``: the inference Lambda's handler, called in this process with the API
  Gateway (REST, proxy) event the request would have become (local mode).

``/reports/<dataset>/<run-id>/...`` is answered here too, not by the API: each training run's
evaluation report (``runs/<dataset>/<run-id>/evaluation/`` in the artifacts bucket), read by
``S3Reports`` with the caller's own credentials, as ``fashion-pipeline report`` reads it. The
API's role never needs the artifacts bucket for it. Reports are served with a policy that
runs no script and loads nothing from elsewhere.

The server binds to the loopback interface only, and refuses requests whose Host is not its
own or that come from another site's page (DNS rebinding, cross-site POSTs): a page on the
internet must not be able to spend the user's credentials through it.

Limits (``UiServer``'s parameters, defaults below): a pool of ``workers`` threads serves the
connections, at most ``max_queued`` more wait for one (beyond that: 503 with Retry-After); the
listen backlog is ``request_queue_size``; reading the request line, the headers and the body
each time out after ``request_timeout`` seconds (a body that never comes: 408); a body over
``max_body_bytes`` is refused from its Content-Length before any of it is read (413); a JSON
body nested deeper than ``MAX_JSON_DEPTH`` is refused (400). Every error this server gives
itself, the HTTP parser's own included (400, 408, 414, 431, 501, 505), is a JSON body in the
API's shape, never an HTML page or a traceback.
"""

from __future__ import annotations

import base64
import errno
import http.server
import json
import logging
import queue
import re
import socket
import sys
import threading
import time
import uuid
from contextlib import nullcontext
from datetime import datetime, timezone
from importlib import resources
from typing import Any, Callable, Mapping, Protocol
from urllib.parse import parse_qs, urlsplit

from .api_client import ApiClient, ApiClientError, ConnectionFailed, CredentialsError

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit for REST APIs
WORKERS = 16  # threads serving connections
MAX_QUEUED = 64  # accepted connections waiting for a worker; beyond: 503
LISTEN_BACKLOG = 128  # connections the kernel holds before accept()
REQUEST_TIMEOUT = 10.0  # seconds for the request line and headers, and again for the body
MAX_JSON_DEPTH = 64  # nesting of a JSON body (the API's requests are flat objects)
RETRY_AFTER_SECONDS = 1  # for the 503 of a full queue
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
    return resources.files("fashion_pipeline_tools").joinpath("web/index.html").read_bytes()


def error_body(code: str, message: str, **extra: Any) -> bytes:
    """The API's error shape, for answers this server gives itself."""
    return json.dumps({"error": {"code": code, "message": message, **extra}}).encode()


# The ``error.code`` of the statuses the HTTP parser (``BaseHTTPRequestHandler``) sends itself.
HTTP_ERROR_CODES = {
    400: "invalid_request", 403: "forbidden", 404: "not_found", 405: "method_not_allowed", 408: "request_timeout",
    411: "length_required", 413: "request_too_large", 414: "uri_too_long", 431: "headers_too_large",
    500: "internal_error", 501: "method_not_implemented", 503: "server_busy", 505: "http_version_not_supported",
}

_JSON_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"', re.DOTALL)
_JSON_BRACKETS = re.compile(rb"[\[\]{}]")


def json_too_deep(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether ``body``, read as JSON, nests arrays/objects deeper than ``limit`` (without
    parsing it: a parser would recurse, and raise RecursionError, on what this rejects)."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    depth = 0
    for match in _JSON_BRACKETS.finditer(_JSON_STRING.sub(b'""', body)):
        if match[0] in b"[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth = max(0, depth - 1)
    return False


# -- the runs' evaluation reports ----------------------------------------------------------
REPORT_TYPES = {".html": "text/html; charset=utf-8", ".svg": "image/svg+xml", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
                ".png": "image/png", ".json": "application/json"}  # fmt: skip
REPORT_HEADERS = {
    # The report is the pipeline's own HTML, but its texts come from data (labels, file names):
    # nothing in it may run or reach out, whatever it holds.
    "Content-Security-Policy": "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
_REPORT_PATH = re.compile(r"^/reports/(?P<dataset>[A-Za-z0-9_.-]{1,64})/(?P<run>[A-Za-z0-9_.-]{1,80})/(?P<file>(?:[A-Za-z0-9_-][A-Za-z0-9_.-]*/){0,2}[A-Za-z0-9_-][A-Za-z0-9_.-]*)?$")


class ReportSource(Protocol):
    def read(self, key: str) -> bytes:
        """The object's bytes; LookupError when it does not exist or cannot be read."""
        ...


class S3Reports:
    """Reads reports from the artifacts bucket with the caller's credentials."""

    def __init__(self, s3: Any, bucket: str) -> None:
        from .aws.fleet import s3_opener  # the objects `fashion-pipeline report` reads, read the same way

        self._open, self.bucket = s3_opener(s3), bucket

    def read(self, key: str) -> bytes:
        return self._open(self.bucket, key).read()


def report_key(path: str) -> str | None:
    """The artifacts key that ``/reports/<dataset>/<run-id>/<file>`` names, or None for a path
    that is not one (no ``..``, no other folder than the run's report)."""
    from fashion_pipeline.layout import REPORT_PAGE, RUNS_PREFIX, run_report_prefix

    found = _REPORT_PATH.match(path)
    if not found or ".." in path:
        return None
    name = found.group("file") or REPORT_PAGE
    if not any(name.endswith(suffix) for suffix in REPORT_TYPES):
        return None
    return run_report_prefix(f"{RUNS_PREFIX}{found.group('dataset')}/{found.group('run')}/") + name


def _is_json(content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type in ("", "application/json") or media_type.endswith("+json")


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
    at a time (its module state is not shared between concurrent invocations). A handler that
    runs each call in an environment of its own (local mode's ``LocalLambdaRuntime``) passes
    ``concurrent=True``.
    """

    def __init__(
        self,
        handler: Callable[[dict[str, Any], Any], Any],
        stage: str = "local",
        *,
        function_name: str = "fashion-pipeline-inference",
        source_ip: str = "127.0.0.1",
        concurrent: bool = False,
    ) -> None:
        self.handler = handler
        self.stage = stage
        self.function_name = function_name
        self.source_ip = source_ip
        self._lock: Any = nullcontext() if concurrent else threading.Lock()

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
    """The UI server; ``serve()`` starts it in a daemon thread.

    Connections are served by a fixed pool of ``workers`` threads, not one thread each: at
    most ``max_queued`` accepted connections wait for a worker, and the next ones are answered
    503 (JSON, Retry-After) at once and closed.
    """

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = LISTEN_BACKLOG

    def __init__(
        self,
        address: tuple[str, int],
        backend: Backend,
        *,
        log: Callable[[str], None] | None = None,
        workers: int = WORKERS,
        max_queued: int = MAX_QUEUED,
        request_timeout: float = REQUEST_TIMEOUT,
        max_body_bytes: int = MAX_BODY_BYTES,
        max_json_depth: int = MAX_JSON_DEPTH,
        reports: ReportSource | None = None,
    ) -> None:
        if workers < 1 or max_queued < 0 or request_timeout <= 0 or max_body_bytes < 0:
            raise ValueError("workers >= 1, max_queued >= 0, request_timeout > 0 and max_body_bytes >= 0 are required")
        self.backend = backend
        self.reports = reports
        self.log = log
        self.page = page()
        self.thread: threading.Thread | None = None
        self.workers = workers
        self.max_queued = max_queued
        self.request_timeout = request_timeout
        self.max_body_bytes = max_body_bytes
        self.max_json_depth = max_json_depth
        self._queue: queue.Queue[tuple[Any, Any] | None] = queue.Queue()
        self._closed = False
        self._pool: list[threading.Thread] = []  # server_close() runs when binding fails
        super().__init__(address, _Handler)
        host, port = self.server_address[:2]
        self.port = int(port)
        shown = f"[{host}]" if ":" in str(host) else host
        self.url = f"http://{shown}:{self.port}/"
        self.allowed_hosts = {f"{name}:{self.port}" for name in ("127.0.0.1", "localhost", "[::1]")}
        self.allowed_origins = {f"http://{name}" for name in self.allowed_hosts}
        self._pool = [
            threading.Thread(target=self._work, name=f"webui:{self.port}:worker-{n}", daemon=True) for n in range(workers)
        ]
        for thread in self._pool:
            thread.start()

    # -- the pool ----------------------------------------------------------------------
    def process_request(self, request: Any, client_address: Any) -> None:
        """Queue the connection for a worker, or answer 503 when the queue is full."""
        if self._closed or self._queue.qsize() >= self.max_queued:
            self._reject(request)
            return
        self._queue.put((request, client_address))

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            request, client_address = item
            try:
                self.finish_request(request, client_address)
            except Exception:  # noqa: BLE001 - one connection's failure must not stop the worker
                self.handle_error(request, client_address)
            finally:
                self.shutdown_request(request)

    def _reject(self, request: socket.socket) -> None:
        """503 on a connection no worker can take (written by the accepting thread: kept short)."""
        body = error_body("server_busy", f"the local server is busy ({self.workers} workers, {self.max_queued} waiting); retry shortly",
                          retry_after=RETRY_AFTER_SECONDS)
        head = (f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                f"Retry-After: {RETRY_AFTER_SECONDS}\r\nConnection: close\r\n\r\n").encode("ascii")
        try:
            request.settimeout(0.1)
            try:  # take the request off the wire, so that closing does not reset the connection
                request.recv(65536)
            except OSError:
                pass
            request.sendall(head + body)
        except OSError:
            pass
        finally:
            self.shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection failed outside a request's handling: one line on the log, no traceback on stdout."""
        error = sys.exc_info()[1]
        if isinstance(error, OSError):  # the client reset or timed out: no traceback
            logger.info("connection from %s failed: %s", client_address, error)
        else:
            logger.warning("connection from %s failed", client_address, exc_info=True)

    def server_close(self) -> None:
        self._closed = True
        super().server_close()
        while True:  # connections still waiting are closed unanswered
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                self.shutdown_request(item[0])
        for _ in self._pool:
            self._queue.put(None)

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


class PortInUse(OSError):
    """The port ``serve()`` was asked for is taken; its message names it."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(errno.EADDRINUSE, f"{host}:{port} is already in use (another server is listening on port {port})")
        self.host = host
        self.port = port


def ensure_port_free(port: int, host: str = "127.0.0.1") -> None:
    """Raise ``PortInUse`` when ``host:port`` cannot be bound, before starting servers that
    would hang or fail later on it (moto's threaded server waits forever on a busy port)."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind: TIME_WAIT is no conflict
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(host, port) from exc
            raise


def serve(backend: Backend, host: str = "127.0.0.1", port: int = 8000, *, log: Callable[[str], None] | None = None,
          **limits: Any) -> UiServer:
    """Serve the UI and ``backend`` on ``host:port`` (port 0: any free port) in a daemon thread.

    Returns the running server: ``.url`` is its address, ``.shutdown()`` stops it. Only a
    loopback host is accepted. ``limits`` are ``UiServer``'s keyword parameters (``workers``,
    ``max_queued``, ``request_timeout``, ``max_body_bytes``, ``max_json_depth``, ``reports``).
    A port in use raises ``PortInUse`` (an ``OSError``) naming it.
    """
    if host not in LOOPBACK_HOSTS:
        raise ValueError(f"the UI server binds to the loopback interface only, not {host!r}")
    if host == "localhost":
        host = "127.0.0.1"
    server_class = UiServer
    if host == "::1":
        server_class = type("UiServer6", (UiServer,), {"address_family": socket.AF_INET6})
    try:
        server = server_class((host, port), backend, log=log, **limits)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(host, port) from exc
        raise
    # A short poll interval: shutdown() returns within it (tests start and stop many servers).
    server.thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"webui:{server.port}", daemon=True)
    server.thread.start()
    return server


def _guarded(method: Callable[[_Handler], None]) -> Callable[[_Handler], None]:
    """A request method whose unexpected failure is a 500 JSON answer (the traceback goes to the log)."""

    def run(self: _Handler) -> None:
        try:
            method(self)
        except Exception:  # noqa: BLE001 - whatever it is, the client gets JSON
            logger.exception("the local server failed on %s %s", self.command, self.path[:200])
            self.close_connection = True
            if not self._answered:
                self._error(500, "internal_error", "the local server failed on this request; see its log")

    run.__name__ = method.__name__
    return run


class _Handler(http.server.BaseHTTPRequestHandler):
    server: UiServer
    server_version = "fashion-pipeline-ui"
    # Errors found before the request line is understood still get a status line (HTTP/0.9
    # answers have none); requests without an HTTP version are refused in parse_request.
    default_request_version = "HTTP/1.0"
    _answered = False

    def setup(self) -> None:
        self.timeout = self.server.request_timeout  # StreamRequestHandler: the socket's timeout
        super().setup()

    def version_string(self) -> str:
        return self.server_version

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        if len(self.requestline.split()) < 3:
            self.send_error(400, "Bad request syntax", "the request line has no HTTP version (HTTP/0.9 is not supported)")
            return False
        return True

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Every error of the HTTP parser as JSON in the API's shape (the base class writes HTML)."""
        short, long = self.responses.get(code, ("Error", ""))
        text = " ".join(part for part in (message or short, f"({explain})" if explain else "") if part)
        if len(text) > 300:
            text = text[:300] + "..."
        self.log_error("code %d, message %s", code, text)
        self.close_connection = True
        body = error_body(HTTP_ERROR_CODES.get(code, "http_error"), text)
        headers = {"Content-Type": "application/json", "Connection": "close"}
        if code == 405:
            headers["Allow"] = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
        if code < 200 or code in (204, 304) or getattr(self, "command", None) == "HEAD":
            self._send(code, headers, b"", length=len(body) if getattr(self, "command", None) == "HEAD" else 0)
        else:
            self._send(code, headers, body)

    @_guarded
    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path in ("/", "/index.html"):
            if self._refused():
                return
            self._send(200, PAGE_HEADERS, self.server.page)
        elif path.startswith("/reports/"):
            if not self._refused():
                self._report(path)
        else:
            self._forward()

    def _report(self, path: str) -> None:
        """A file of a run's evaluation report, from the report source; JSON errors otherwise."""
        key = report_key(path)
        if key is None:
            self._error(404, "not_found", "no such report path: /reports/<dataset>/<run-id>/ and its files (index.html, compare.html, charts/, thumbs/)")
            return
        if self.server.reports is None:
            self._error(404, "not_found", "this server has no access to the runs' reports (fashion-pipeline ui finds them through the stack's"
                                          " ArtifactsBucketName output; fashion-pipeline report --dataset NAME --out DIR writes one)")
            return
        try:
            body = self.server.reports.read(key)
        except LookupError as exc:
            self._error(404, "not_found", f"no report there: {exc} (the run may not have written one: see fashion-pipeline runs)")
            return
        suffix = key[key.rfind("."):].lower()
        self._send(200, {"Content-Type": REPORT_TYPES[suffix], **REPORT_HEADERS}, body)

    @_guarded
    def do_HEAD(self) -> None:
        if urlsplit(self.path).path in ("/", "/index.html") and not self._refused():
            self._send(200, PAGE_HEADERS, b"", length=len(self.server.page))
        elif not self._answered:
            self._send(405, {"Content-Type": "application/json", "Allow": "GET, POST"},
                       b"", length=len(error_body("method_not_allowed", "HEAD is answered for the page only")))

    @_guarded
    def _forward_guarded(self) -> None:
        self._forward()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _forward_guarded

    def do_TRACE(self) -> None:
        self.send_error(405, "Method Not Allowed", f"{self.command} is not answered by this server")

    do_CONNECT = do_TRACE

    # -- internals ---------------------------------------------------------------------
    def _refused(self) -> bool:
        """Answer 403 to requests from other sites or under another host name."""
        host = (self.headers.get("Host") or "").lower()
        if host not in self.server.allowed_hosts:
            shown = host if len(host) <= 100 else host[:100] + "..."
            self._error(403, "forbidden", f"this server answers requests for {self.server.url} only (Host {shown or 'missing'})")
            return True
        origin = self.headers.get("Origin")
        site = (self.headers.get("Sec-Fetch-Site") or "").lower()
        if (origin and origin.lower() not in self.server.allowed_origins) or site in ("cross-site", "same-site"):
            self._error(403, "forbidden", "requests from other sites are refused")
            return True
        return False

    def _read_body(self, length: int) -> bytes | None:
        """The body, read within the request timeout (in all, not per read); None once answered (408/400)."""
        deadline = time.monotonic() + self.server.request_timeout
        chunks: list[bytes] = []
        remaining = length
        try:
            while remaining:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                self.connection.settimeout(left)
                chunk = self.rfile.read1(min(remaining, 1 << 16))
                if not chunk:
                    self.close_connection = True
                    self._error(400, "invalid_request", f"the connection ended after {length - remaining} of the {length} bytes of the body")
                    return None
                chunks.append(chunk)
                remaining -= len(chunk)
            self.connection.settimeout(self.server.request_timeout)  # for writing the answer
        except TimeoutError:
            self.connection.settimeout(self.server.request_timeout)
            self.close_connection = True
            self._error(408, "request_timeout", f"the body's {length} bytes did not arrive within {self.server.request_timeout:g} s "
                                                f"({length - remaining} came)")
            return None
        return b"".join(chunks)

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
        limit = self.server.max_body_bytes
        if length > limit:
            self.close_connection = True  # the body stays unread
            self._error(413, "image_too_large", f"the request is {length} bytes; the API accepts at most {limit} bytes ({limit / 1048576:g} MB)")
            return
        body = self._read_body(length) if length else b""
        if body is None:
            return
        content_type = self.headers.get("Content-Type") or ""
        if body and _is_json(content_type) and json_too_deep(body, self.server.max_json_depth):
            self._error(400, "invalid_request", f"the JSON body nests deeper than {self.server.max_json_depth} levels")
            return
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
            logger.exception("backend failed for %s %s", self.command, parts.path[:200])
            self._error(500, "internal_error", "the local server failed to forward the request; see its log")
            return
        forwarded = {name: value for name, value in answer_headers.items() if name.lower() in FORWARDED_RESPONSE_HEADERS}
        self._send(status, forwarded, answer)

    def _error(self, status: int, code: str, message: str) -> None:
        self._send(status, {"Content-Type": "application/json"}, error_body(code, message))

    def _send(self, status: int, headers: Mapping[str, str], body: bytes, *, length: int | None = None) -> None:
        self._answered = True
        try:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body) if length is None else length))
            self.end_headers()
            if body:
                self.wfile.write(body)
        except (OSError, ValueError):  # the client went away (reset, broken pipe, timeout, closed file)
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        line = f"{self.address_string()} {format % args}"
        if len(line) > 500:
            line = line[:500] + "..."
        if self.server.log is not None:
            self.server.log(line)
        else:
            logger.debug(line)
