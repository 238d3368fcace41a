"""Fakes for the web tests: an inference handler answering canned proxy results, a server
recording what it receives, and real sample images with their garment boxes."""

from __future__ import annotations

import base64
import http.server
import io
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fashion_pipeline.labels import CATEGORY_NAMES

MODEL = {"version": "fashion-2024-06-01", "arn": "arn:aws:rekognition:us-east-1:123456789012:project/fashion/version/v1/1",
         "status": "RUNNING", "f1": 0.912, "emulated": True}
MODEL_STATE = {**MODEL, "inference_units": 1, "running_since": "2024-06-01T10:00:00Z", "dataset": "sample",
               "message": "The model is the project's offline emulator of Rekognition Custom Labels, not a trained model."}


def png_bytes(width: int = 96, height: int = 64, colour: tuple[int, int, int] = (200, 40, 90)) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, "PNG")
    return out.getvalue()


@dataclass
class Sample:
    path: Path
    data: bytes
    width: int
    height: int
    garments: list[dict[str, Any]]

    def answer(self) -> dict[str, Any]:
        return {"model": MODEL, "image": {"width": self.width, "height": self.height, "format": "png"}, "garments": self.garments}


def sample_image(root: Path, *, garments: int, confidences: list[float]) -> Sample:
    """A generated PNG of the sample set with at least ``garments`` garments, and its answer."""
    from fashion_pipeline.images import probe_bytes
    from fashion_pipeline_tools.sample import generate

    sample = generate(root, images=12, seed=7)
    for name in sample.files:
        annotation = json.loads((sample.annotations / name).read_text())
        items = [annotation[k] for k in sorted(annotation) if k.startswith("item")]
        image = sample.images / f"{name[:-5]}.png"
        if len(items) >= garments and image.exists():
            data = image.read_bytes()
            info = probe_bytes(data)
            answer = []
            for item, confidence in zip(items[:garments], confidences):
                x1, y1, x2, y2 = item["bounding_box"]
                x2, y2 = min(x2, info.width), min(y2, info.height)
                answer.append({
                    "label": CATEGORY_NAMES[item["category_id"]],
                    "confidence": confidence,
                    "box": {"left": x1 / info.width, "top": y1 / info.height, "width": (x2 - x1) / info.width, "height": (y2 - y1) / info.height},
                    "pixels": {"left": x1, "top": y1, "width": x2 - x1, "height": y2 - y1},
                })
            answer.sort(key=lambda g: -g["confidence"])
            return Sample(image, data, info.width, info.height, answer)
    raise AssertionError(f"no PNG with {garments} garments in the sample")


def proxy(status: int, body: Any, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """A Lambda proxy result: JSON for dicts, base64 for bytes."""
    if isinstance(body, bytes):
        return {"statusCode": status, "headers": {"Content-Type": "image/png", **(headers or {})},
                "body": base64.b64encode(body).decode(), "isBase64Encoded": True}
    return {"statusCode": status, "headers": {"Content-Type": "application/json", **(headers or {})},
            "body": json.dumps(body), "isBase64Encoded": False}


def error(status: int, code: str, message: str, **extra: Any) -> dict[str, Any]:
    headers = {"Retry-After": str(extra["retry_after"])} if "retry_after" in extra else None
    return proxy(status, {"error": {"code": code, "message": message, **extra}}, headers)


@dataclass
class FakeHandler:
    """An inference handler: ``detections`` answers POST /detections (a proxy result, or a
    callable of the event), ``model`` answers GET /model; every event is kept."""

    detections: Any = None
    model: dict[str, Any] = field(default_factory=lambda: proxy(200, MODEL_STATE))
    events: list[dict[str, Any]] = field(default_factory=list)
    contexts: list[Any] = field(default_factory=list)

    models: dict[str, Any] | None = None  # answers GET /models when set (an API of one dataset has none to pick)

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        self.events.append(event)
        self.contexts.append(context)
        if event["httpMethod"] == "GET" and event["path"] == "/model":
            return self.model
        if event["httpMethod"] == "GET" and event["path"] == "/models" and self.models is not None:
            return self.models
        if event["httpMethod"] == "POST" and event["path"] == "/detections":
            answer = self.detections
            return answer(event) if callable(answer) else answer
        return error(404, "not_found", f"no route {event['httpMethod']} {event['path']}")

    def detection_events(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e["path"] == "/detections"]


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class RecordingServer:
    """A local HTTP server that keeps each request and answers with ``answer(recorded)``:
    ``(status, headers, body)``."""

    def __init__(self, answer: Any = None) -> None:
        self.requests: list[Recorded] = []
        self.answer = answer or (lambda recorded: (200, {"Content-Type": "application/json"}, b'{"ok": true}'))
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                recorded = Recorded(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, self.rfile.read(length))
                owner.requests.append(recorded)
                status, headers, body = owner.answer(recorded)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _handle

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> RecordingServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


def photo(folder):
    """A small PNG photo written into ``folder`` (a pathlib.Path), for commands that read a file."""
    path = folder / "photo.png"
    path.write_bytes(png_bytes())
    return path
