"""A small client of the inference API: SigV4 (IAM) or API-key authentication, urllib only.

On AWS every route needs a request signed with Signature Version 4 for the ``execute-api``
service, unless the stack was deployed with ``apiAuth: apiKey`` (then an ``x-api-key``
header). Local mode answers plain ``http://127.0.0.1:PORT`` requests without either.

Secrets never reach a log: requests are logged (at DEBUG) by method, URL and status only.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import logging
import re
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Mapping
from urllib.parse import quote, urlencode, urlsplit

logger = logging.getLogger(__name__)

SERVICE = "execute-api"
DEFAULT_TIMEOUT = 35.0  # the API's own limit is 29 s (API Gateway), plus the way there and back
USER_AGENT = "fashion-pipeline-api-client/1"
_EXECUTE_API_HOST = re.compile(r"^[a-z0-9]+\.execute-api\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$", re.IGNORECASE)
_CALLER_HEADERS = ("content-type", "accept")  # the headers callers may set; the rest are the client's


class ApiClientError(Exception):
    """The request could not be made or sent (no answer from the API)."""


class CredentialsError(ApiClientError):
    """No AWS credentials to sign with."""


class ConnectionFailed(ApiClientError):
    """The API could not be reached, or did not answer in time."""


@dataclass(frozen=True)
class ApiResponse:
    """An answer of the API. ``headers`` keys are lower case."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))

    def error(self) -> dict[str, Any]:
        """``{"code", "message", ...}`` of an error answer, also for API Gateway's own errors.

        API Gateway answers ``{"message": "..."}`` (403 Missing Authentication Token, 502, ...);
        the inference Lambda answers ``{"error": {"code", "message"}}``.
        """
        try:
            document = self.json()
        except (ValueError, UnicodeDecodeError):
            document = None
        if isinstance(document, dict):
            error = document.get("error")
            if isinstance(error, dict) and error.get("message"):
                return {"code": str(error.get("code") or f"http_{self.status}"), **error}
            if isinstance(document.get("message"), str):
                return {"code": f"http_{self.status}", "message": document["message"]}
        text = self.body.decode("utf-8", "replace").strip()[:300]
        return {"code": f"http_{self.status}", "message": text or f"HTTP {self.status}"}

    def error_message(self) -> str:
        """One human line for an error answer: status, code, message and any retry hint."""
        error = self.error()
        line = f"{self.status} {error['code']}: {error['message']}"
        model = error.get("model")
        if isinstance(model, dict) and model.get("status") and model["status"] not in error["message"]:
            line += f" (model status {model['status']})"
        retry = self.header("retry-after")
        if retry:
            line += f"; retry in {retry} s"
        return line


def region_from_endpoint(endpoint: str) -> str | None:
    """``us-east-1`` for ``https://abc123.execute-api.us-east-1.amazonaws.com/prod``; None otherwise."""
    match = _EXECUTE_API_HOST.match(urlsplit(endpoint).hostname or "")
    return match.group(1).lower() if match else None


def is_loopback(endpoint: str) -> bool:
    host = (urlsplit(endpoint).hostname or "").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a redirected signed request would not be valid there: report the 3xx


class ApiClient:
    """Calls the inference API at ``endpoint`` (``https://{id}.execute-api.{region}.amazonaws.com/{stage}``).

    * ``api_key``: send ``x-api-key`` and do not sign;
    * otherwise sign with SigV4 using ``session``'s credentials (a boto3 or botocore session;
      a default boto3 session when omitted), for ``region`` (parsed from an execute-api
      endpoint when omitted, else the session's region);
    * ``unsigned``: neither (local mode). By default, endpoints on a loopback address are
      unsigned and every other endpoint is signed.
    """

    def __init__(
        self,
        endpoint: str,
        *,
        api_key: str | None = None,
        session: Any = None,
        region: str | None = None,
        unsigned: bool | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ApiClientError(f"endpoint {endpoint!r} is not an http(s) URL")
        if parts.query or parts.fragment:
            raise ApiClientError(f"endpoint {endpoint!r} must not have a query or fragment")
        self.endpoint = endpoint.rstrip("/")
        self._api_key = api_key or None
        self._session = session
        self.unsigned = is_loopback(endpoint) if unsigned is None else unsigned
        self.region = region or region_from_endpoint(endpoint)
        self.timeout = timeout
        handlers: list[Any] = [_NoRedirect()]
        if is_loopback(endpoint):
            handlers.append(urllib.request.ProxyHandler({}))  # never send local traffic to a proxy
        self._opener = urllib.request.build_opener(*handlers)

    def __repr__(self) -> str:  # no key in reprs, tracebacks or logs
        return f"ApiClient({self.endpoint!r}, auth={self.auth!r})"

    @property
    def auth(self) -> str:
        """``"api-key"``, ``"none"`` or ``"sigv4"``."""
        if self._api_key:
            return "api-key"
        return "none" if self.unsigned else "sigv4"

    def url(self, path: str, query: Mapping[str, Any] | None = None) -> str:
        base = urlsplit(self.endpoint)
        full_path = base.path.rstrip("/") + "/" + path.lstrip("/")
        url = f"{base.scheme}://{base.netloc}{quote(full_path, safe='/-_.~%')}"
        pairs = _query_pairs(query)
        if pairs:
            # RFC 3986 encoding, as SigV4's canonical query string has it.
            url += "?" + urlencode(pairs, quote_via=quote, safe="-_.~")
        return url

    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        query: Mapping[str, Any] | None = None,
    ) -> ApiResponse:
        """Send one request; any HTTP status is an answer. Raises ApiClientError when there is none."""
        method = method.upper()
        url = self.url(path, query)
        sent: dict[str, str] = {}
        for name, value in (headers or {}).items():
            if name.lower() in _CALLER_HEADERS and value:
                sent[name.title()] = str(value)
        if body and "Content-Type" not in sent:
            sent["Content-Type"] = "application/octet-stream"  # urllib would say form-urlencoded
        if self._api_key:
            sent["x-api-key"] = self._api_key
        elif not self.unsigned:
            sent.update(self._signature(method, url, body, sent))
        sent["User-Agent"] = USER_AGENT
        request = urllib.request.Request(url, data=body if body or method in ("POST", "PUT", "PATCH") else None, method=method, headers=sent)
        logger.debug("%s %s", method, url)
        try:
            with self._opener.open(request, timeout=self.timeout) as answer:
                response = ApiResponse(answer.status, _lower(answer.headers.items()), answer.read())
        except urllib.error.HTTPError as exc:  # a non-2xx answer is still an answer
            try:
                content = exc.read() or b""
            except (OSError, AttributeError):
                content = b""
            finally:
                exc.close()
            response = ApiResponse(exc.code, _lower(exc.headers.items() if exc.headers else ()), content)
        except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ConnectionFailed(f"cannot reach {self.endpoint}: {reason}") from None
        logger.debug("%s %s -> %s", method, url, response.status)
        return response

    # -- the API's routes --------------------------------------------------------------
    def detect(
        self,
        image: bytes,
        *,
        content_type: str,
        min_confidence: float | None = None,
        max_results: int | None = None,
        accept: str = "application/json",
        dataset: str | None = None,
    ) -> ApiResponse:
        """``POST /detections`` with the image as the body (``accept="image/png"`` for the drawing)."""
        query = {"min_confidence": _number(min_confidence), "max_results": max_results, "dataset": dataset}
        return self.request("POST", "/detections", body=image, headers={"Content-Type": content_type, "Accept": accept}, query=query)

    def model(self, dataset: str | None = None) -> ApiResponse:
        """``GET /model`` (of ``dataset``; None: the API's default)."""
        return self.request("GET", "/model", headers={"Accept": "application/json"}, query={"dataset": dataset})

    def models(self) -> ApiResponse:
        """``GET /models``: every dataset's deployed model."""
        return self.request("GET", "/models", headers={"Accept": "application/json"})

    def transition(self, action: str, dataset: str | None = None) -> ApiResponse:
        """``POST /model/start`` or ``POST /model/stop`` (of ``dataset``)."""
        return self.request("POST", f"/model/{action}", headers={"Accept": "application/json"}, query={"dataset": dataset})

    # -- signing -----------------------------------------------------------------------
    def _signature(self, method: str, url: str, body: bytes, headers: dict[str, str]) -> dict[str, str]:
        from botocore.awsrequest import AWSRequest

        session = self._session
        if session is None:
            import boto3

            session = self._session = boto3.Session()
        credentials = session.get_credentials()
        if credentials is None:
            raise CredentialsError(
                "no AWS credentials to sign the request with: configure them (aws configure, AWS_PROFILE, "
                "environment variables) or pass an API key when the API uses one"
            )
        region = self.region or getattr(session, "region_name", None) or _botocore_region(session)
        if not region:
            raise ApiClientError(
                f"cannot tell the AWS region of {self.endpoint}: pass --region (or configure a default region)"
            )
        self.region = region
        aws_request = AWSRequest(method=method, url=url, data=body, headers=dict(headers))
        _quiet_signer(credentials.get_frozen_credentials(), region).add_auth(aws_request)
        return {name: value for name, value in aws_request.headers.items() if name not in headers}


@functools.lru_cache(maxsize=1)
def _signer_class() -> type:
    """``SigV4Auth`` whose ``add_auth`` does not log the canonical request.

    botocore's ``add_auth`` logs the canonical request at DEBUG, session token included; this
    takes the same steps without that log line.
    """
    from datetime import datetime, timezone

    from botocore.auth import SIGV4_TIMESTAMP, SigV4Auth

    class QuietSigV4Auth(SigV4Auth):
        def add_auth(self, request: Any) -> None:
            request.context["timestamp"] = datetime.now(timezone.utc).strftime(SIGV4_TIMESTAMP)
            self._modify_request_before_signing(request)
            canonical_request = self.canonical_request(request)
            signature = self.signature(self.string_to_sign(request, canonical_request), request)
            self._inject_signature_to_request(request, signature)

    return QuietSigV4Auth


def _quiet_signer(credentials: Any, region: str) -> Any:
    """``SigV4Auth(credentials, "execute-api", region)``, without the debug log of secrets."""
    return _signer_class()(credentials, SERVICE, region)


def _botocore_region(session: Any) -> str | None:
    get = getattr(session, "get_config_variable", None)
    return get("region") if callable(get) else None


def _number(value: float | None) -> str | None:
    if value is None:
        return None
    return f"{value:g}" if isinstance(value, float) else str(value)


def _query_pairs(query: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for key, value in (query or {}).items():
        if value is None:
            continue
        for item in value if isinstance(value, (list, tuple)) else (value,):
            if isinstance(item, bool):
                item = "true" if item else "false"
            pairs.append((str(key), str(item)))
    return pairs


def _lower(items: Any) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in items:
        key = name.lower()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return headers
