"""``fashion-pipeline detect`` and ``ui`` against fake APIs."""

from __future__ import annotations

import argparse
import base64
import json
import urllib.request

import pytest

from fashion_pipeline_tools import api_commands
from fashion_pipeline_tools.webui import LambdaBackend, serve
from tests.fashion_pipeline_tools.web.fakes import MODEL, FakeHandler, RecordingServer, error, photo, png_bytes, proxy

ANSWER = {
    "model": MODEL,
    "image": {"width": 96, "height": 64, "format": "png"},
    "garments": [
        {"label": "trousers", "confidence": 97.25, "box": {"left": 0.1, "top": 0.2, "width": 0.3, "height": 0.4},
         "pixels": {"left": 10, "top": 13, "width": 29, "height": 26}},
        {"label": "short_sleeved_shirt", "confidence": 41.0, "box": None, "pixels": None},
    ],
}
DRAWN = png_bytes(colour=(9, 9, 9))


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command", required=True)
    api_commands.register(commands)
    return parser.parse_args(argv)


@pytest.fixture
def handler():
    def detections(event):
        if event["headers"].get("Accept") == "image/png":
            return proxy(200, DRAWN)
        return proxy(200, ANSWER)

    return FakeHandler(detections=detections)


@pytest.fixture
def api(handler):
    server = serve(LambdaBackend(handler), port=0)
    yield server.url.rstrip("/")
    server.shutdown()


@pytest.fixture
def image(tmp_path):
    return photo(tmp_path)


def test_detect_prints_a_table(api, handler, image, capsys):
    assert api_commands.detect(parse("detect", str(image), "--endpoint", api, "--min-confidence", "20", "--max-results", "5")) == 0
    out = capsys.readouterr().out
    assert "model fashion-2024-06-01 (RUNNING, F1 0.912) [emulated" in out
    assert "image 96x64 png" in out
    assert [line.split() for line in out.splitlines() if line.startswith("trousers")] == [["trousers", "97.2%", "10", "13", "29", "26"]]
    assert "short_sleeved_shirt" in out and "(whole image)" in out
    [event] = handler.detection_events()
    assert event["queryStringParameters"] == {"min_confidence": "20", "max_results": "5"}
    assert event["headers"]["Content-Type"] == "image/png"
    assert base64.b64decode(event["body"]) == image.read_bytes()


def test_detect_json_and_render(api, handler, image, tmp_path, capsys):
    out_file = tmp_path / "out" / "drawn.png"
    assert api_commands.detect(parse("detect", str(image), "--endpoint", api, "--json", "--render", str(out_file))) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out) == ANSWER
    assert out_file.read_bytes() == DRAWN
    assert "wrote" in captured.err
    assert [e["headers"]["Accept"] for e in handler.detection_events()] == ["application/json", "image/png"]


def test_api_errors_exit_1_with_the_message(api, handler, image, capsys):
    handler.detections = error(415, "unsupported_media_type", "GIF image; only JPEG and PNG are accepted")
    assert api_commands.detect(parse("detect", str(image), "--endpoint", api)) == 1
    assert "415 unsupported_media_type: GIF image; only JPEG and PNG are accepted" in capsys.readouterr().err
    handler.detections = error(503, "model_starting", "the model is STARTING", retry_after=60)
    assert api_commands.detect(parse("detect", str(image), "--endpoint", api)) == 1
    assert "503 model_starting: the model is STARTING; retry in 60 s" in capsys.readouterr().err


def test_unknown_formats_are_sent_for_the_api_to_judge(api, handler, tmp_path, capsys):
    gif = tmp_path / "a.gif"
    gif.write_bytes(b"GIF89a" + bytes(64))
    api_commands.detect(parse("detect", str(gif), "--endpoint", api))
    assert handler.detection_events()[0]["headers"]["Content-Type"] == "application/octet-stream"


def test_a_missing_file_is_exit_2(capsys, tmp_path):
    assert api_commands.detect(parse("detect", str(tmp_path / "none.jpg"), "--endpoint", "http://127.0.0.1:9")) == 2
    assert "cannot read" in capsys.readouterr().err


def test_the_endpoint_defaults_to_the_stack_output_and_is_signed(image, monkeypatch, capsys):
    seen = {}

    def outputs(session, stack):
        seen["stack"], seen["region"] = stack, session.region_name
        return {"ApiUrl": f"{api.url}/prod/"}

    monkeypatch.setattr(api_commands, "stack_outputs_for", outputs)
    with RecordingServer(lambda r: (200, {"Content-Type": "application/json"}, json.dumps(ANSWER).encode())) as api:
        assert api_commands.detect(parse("detect", str(image), "--stack", "MyStack", "--region", "eu-west-3")) == 0
    assert seen == {"stack": "MyStack", "region": "eu-west-3"}
    [recorded] = api.requests
    assert recorded.path == "/prod/detections"
    assert "/eu-west-3/execute-api/aws4_request" in recorded.headers["authorization"]


def test_a_stack_without_an_api_is_exit_2(image, monkeypatch, capsys):
    monkeypatch.setattr(api_commands, "stack_outputs_for", lambda session, stack: {})
    assert api_commands.detect(parse("detect", str(image))) == 2
    assert "no ApiUrl output" in capsys.readouterr().err


def test_arguments_do_not_clash_with_existing_stack_and_region():
    parser = argparse.ArgumentParser()
    parser.add_argument("--stack", default="Other")
    parser.add_argument("--region")
    api_commands.add_arguments_ui(parser)
    args = parser.parse_args(["--port", "0", "--api-key", "k"])
    assert (args.stack, args.port, args.api_key, args.endpoint, args.open) == ("Other", 0, "k", None, False)
    args = parse("detect", "x.jpg")
    assert (args.stack, args.region, args.render, args.json) == ("FashionPipeline", None, None, False)
    with pytest.raises(SystemExit):
        parse("detect", "x.jpg", "--min-confidence", "101")


def test_ui_serves_until_interrupted(api, monkeypatch, capsys):
    from fashion_pipeline_tools import webui

    started = {}
    real_serve = webui.serve

    def spy(backend, **kwargs):
        server = real_serve(backend, **kwargs)
        started["server"] = server
        return server

    monkeypatch.setattr(webui, "serve", spy)
    def fake_sleep(seconds):
        server = started["server"]
        with urllib.request.urlopen(f"{server.url}model", timeout=5) as answer:
            started["model"] = json.loads(answer.read())
        raise KeyboardInterrupt

    monkeypatch.setattr(api_commands.time, "sleep", fake_sleep)
    assert api_commands.ui(parse("ui", "--endpoint", api, "--port", "0")) == 0
    assert started["model"]["status"] == "RUNNING"
    out = capsys.readouterr().out
    assert f"at {started['server'].url}" in out and "(none)" in out
    assert not started["server"].thread.is_alive()
