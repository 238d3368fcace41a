"""ApiClient: SigV4 signing for execute-api, API keys, unsigned local calls and error answers."""

from __future__ import annotations

import io
import urllib.error
from email.message import Message

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from fashion_pipeline_tools.api_client import (
    ApiClient,
    ApiResponse,
    ConnectionFailed,
    CredentialsError,
    region_from_endpoint,
)
from tests.fashion_pipeline_tools.web.fakes import RecordingServer, png_bytes

SESSION = boto3.Session(aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret-example", aws_session_token="token-example", region_name="us-east-1")


def authorization(header: str) -> dict[str, str]:
    scheme, _, rest = header.partition(" ")
    assert scheme == "AWS4-HMAC-SHA256"
    return dict(part.strip().split("=", 1) for part in rest.split(","))


def expected_signature(recorded, host: str, region: str) -> str:
    """What API Gateway computes for the request as received."""
    fields = authorization(recorded.headers["authorization"])
    signed = fields["SignedHeaders"].split(";")
    request = AWSRequest(method=recorded.method, url=f"http://{host}{recorded.path}", data=recorded.body,
                         headers={name: recorded.headers[name] for name in signed})
    request.context["timestamp"] = recorded.headers["x-amz-date"]
    auth = SigV4Auth(Credentials("AKIDEXAMPLE", "secret-example", "token-example"), "execute-api", region)
    return auth.signature(auth.string_to_sign(request, auth.canonical_request(request)), request)


def test_sigv4_signs_for_execute_api_in_the_region():
    image = png_bytes()
    with RecordingServer() as server:
        client = ApiClient(f"{server.url}/prod/", session=SESSION, region="eu-west-1", unsigned=False)
        answer = client.request("POST", "/detections", body=image, headers={"Content-Type": "image/png", "Accept": "application/json"},
                                query={"min_confidence": 0, "max_results": 5})
    assert answer.status == 200 and answer.json() == {"ok": True}
    [recorded] = server.requests
    assert recorded.method == "POST"
    assert recorded.path == "/prod/detections?min_confidence=0&max_results=5"
    assert recorded.body == image
    fields = authorization(recorded.headers["authorization"])
    key, date, region, service, terminator = fields["Credential"].split("/")
    assert (key, region, service, terminator) == ("AKIDEXAMPLE", "eu-west-1", "execute-api", "aws4_request")
    assert recorded.headers["x-amz-date"].startswith(date)
    assert recorded.headers["x-amz-security-token"] == "token-example"
    assert {"content-type", "accept", "host", "x-amz-date", "x-amz-security-token"} <= set(fields["SignedHeaders"].split(";"))
    assert "x-api-key" not in recorded.headers
    # The signature is the one the service computes from what it received.
    assert fields["Signature"] == expected_signature(recorded, server.url.split("//")[1], "eu-west-1")


def test_signed_get_with_an_encoded_query_verifies():
    with RecordingServer() as server:
        ApiClient(server.url, session=SESSION, region="us-west-2", unsigned=False).request("GET", "model", query={"q": "a b/c", "n": [1, 2]})
    [recorded] = server.requests
    assert recorded.path == "/model?q=a%20b%2Fc&n=1&n=2"
    assert authorization(recorded.headers["authorization"])["Signature"] == expected_signature(recorded, server.url.split("//")[1], "us-west-2")


class FakeOpener:
    def __init__(self) -> None:
        self.requests: list = []

    def open(self, request, timeout):
        self.requests.append((request, timeout))
        headers = Message()
        headers["Content-Type"] = "application/json"
        headers["Retry-After"] = "30"
        raise urllib.error.HTTPError(request.full_url, 503, "Service Unavailable", headers,
                                     io.BytesIO(b'{"error": {"code": "model_starting", "message": "the model is STARTING"}}'))


def test_region_comes_from_an_execute_api_endpoint():
    endpoint = "https://abc123def4.execute-api.ap-southeast-2.amazonaws.com/prod"
    assert region_from_endpoint(endpoint) == "ap-southeast-2"
    assert region_from_endpoint("https://api.example.com/prod") is None
    client = ApiClient(endpoint, session=SESSION)
    assert client.auth == "sigv4" and client.region == "ap-southeast-2"
    client._opener = opener = FakeOpener()
    answer = client.model()
    [(request, timeout)] = opener.requests
    assert request.full_url == "https://abc123def4.execute-api.ap-southeast-2.amazonaws.com/prod/model"
    credential = authorization(request.get_header("Authorization"))["Credential"]
    assert credential.endswith("/ap-southeast-2/execute-api/aws4_request")
    assert timeout == client.timeout
    assert answer.status == 503 and answer.header("Retry-After") == "30"
    assert answer.error_message() == "503 model_starting: the model is STARTING; retry in 30 s"


def test_other_endpoints_sign_for_the_session_region():
    client = ApiClient("https://api.example.com/v1", session=SESSION)
    client._opener = opener = FakeOpener()
    client.model()
    assert "/us-east-1/execute-api/" in opener.requests[0][0].get_header("Authorization")


def test_api_key_mode_sends_the_key_and_does_not_sign():
    with RecordingServer() as server:
        client = ApiClient(server.url, api_key="k3y-secret", session=SESSION, unsigned=False)
        client.detect(png_bytes(), content_type="image/png", min_confidence=12.5)
    [recorded] = server.requests
    assert recorded.headers["x-api-key"] == "k3y-secret"
    assert "authorization" not in recorded.headers and "x-amz-date" not in recorded.headers
    assert recorded.path == "/detections?min_confidence=12.5"
    assert "k3y-secret" not in repr(client)


def test_loopback_endpoints_are_unsigned_by_default():
    with RecordingServer() as server:
        client = ApiClient(server.url)
        assert client.auth == "none"
        client.request("POST", "/detections", body=b"\x89PNG...")
    [recorded] = server.requests
    assert "authorization" not in recorded.headers and "x-api-key" not in recorded.headers
    assert recorded.headers["content-type"] == "application/octet-stream"  # never urllib's form default


class NoCredentials:
    region_name = "us-east-1"

    def get_credentials(self):
        return None


def test_missing_credentials_are_a_clear_error():
    client = ApiClient("https://abc.execute-api.us-east-1.amazonaws.com/prod", session=NoCredentials())
    with pytest.raises(CredentialsError, match="no AWS credentials"):
        client.model()


def test_an_unreachable_endpoint_raises_connection_failed():
    with RecordingServer() as server:
        url = server.url
    with pytest.raises(ConnectionFailed, match="cannot reach"):
        ApiClient(url, timeout=2).model()


def test_error_messages_of_gateway_and_lambda_answers():
    gateway = ApiResponse(403, {"content-type": "application/json"}, b'{"message": "Missing Authentication Token"}')
    assert gateway.error_message() == "403 http_403: Missing Authentication Token"
    lambda_error = ApiResponse(503, {"retry-after": "5"}, b'{"error": {"code": "model_not_running", "message": "the model is STOPPED, not RUNNING", "model": {"status": "STOPPED"}}}')
    assert lambda_error.error_message() == "503 model_not_running: the model is STOPPED, not RUNNING; retry in 5 s"
    assert ApiResponse(500, {}, b"boom").error()["message"] == "boom"


def test_secrets_are_not_logged(caplog):
    caplog.set_level("DEBUG")
    with RecordingServer() as server:
        ApiClient(server.url, session=SESSION, region="us-east-1", unsigned=False).model()
        ApiClient(server.url, api_key="k3y-secret").model()
    text = caplog.text
    assert "/model" in text
    for secret in ("secret-example", "token-example", "k3y-secret", "Signature="):
        assert secret not in text
