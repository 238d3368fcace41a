"""``fashion-pipeline detect`` and ``fashion-pipeline ui``: the inference API from a terminal
and from a browser.

Both find the API from ``--endpoint`` or, by default, from the deployed stack's ``ApiUrl``
output. Requests are signed with your AWS credentials (SigV4), or carry ``--api-key`` (or
``$FASHION_PIPELINE_API_KEY``; when the stack uses API keys and none is given, its key is
read from API Gateway). Endpoints on 127.0.0.1 (local mode) are called without either.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .aws.stack import DEFAULT_STACK, StackNotFound

if TYPE_CHECKING:
    from .api_client import ApiClient, ApiResponse

# The HTTP client (urllib, http.client, ssl) is imported by the commands that use it, so
# that every other fashion-pipeline command starts without it.

API_KEY_ENV = "FASHION_PIPELINE_API_KEY"


class CommandError(Exception):
    """A problem to report in one line (exit status 2)."""


# -- arguments -------------------------------------------------------------------------
def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--endpoint", help="the API's URL (default: the stack's ApiUrl output), e.g. http://127.0.0.1:8000 in local mode")
    parser.add_argument("--api-key", help=f"send this API key instead of signing (default: ${API_KEY_ENV}; "
                                          "read from API Gateway when the stack uses keys)")
    existing = set(parser._option_string_actions)  # the lead's parser may already have these
    if "--stack" not in existing:
        parser.add_argument("--stack", default=DEFAULT_STACK, help="the deployed stack whose outputs name the API")
    if "--region" not in existing:
        parser.add_argument("--region", help="AWS region (default: the endpoint's, else your AWS configuration)")


def _confidence(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError("must be from 0 to 100 (percent)")
    return value


def _results(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 100:
        raise argparse.ArgumentTypeError("must be from 1 to 100")
    return value


RENDER_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}


def _render_path(text: str) -> str:
    if Path(text).suffix.lower() not in RENDER_TYPES:
        raise argparse.ArgumentTypeError(f"{text!r}: the drawing is written as PNG or JPEG: name it .png, .jpg or .jpeg")
    return text


def add_arguments_detect(parser: argparse.ArgumentParser) -> None:
    """``detect IMAGE [--endpoint URL] [--api-key KEY] [--render OUT] [--min-confidence N] [--max-results N] [--json]``."""
    parser.add_argument("image", help="a JPEG or PNG file")
    parser.add_argument("--render", metavar="OUT", type=_render_path,
                        help="also write the image with the garments outlined: PNG for a .png name, JPEG for .jpg or .jpeg")
    parser.add_argument("--min-confidence", type=_confidence, metavar="N", help="lowest confidence, percent (default: each label's trained threshold)")
    parser.add_argument("--max-results", type=_results, metavar="N", help="at most N garments")
    parser.add_argument("--dataset", help="the dataset whose model answers (default: the API's default dataset, or the one with a model)")
    parser.add_argument("--json", action="store_true", help="print the API's JSON answer instead of a table")
    _add_common(parser)


def add_arguments_ui(parser: argparse.ArgumentParser) -> None:
    """``ui [--endpoint URL] [--api-key KEY] [--port 8080] [--open]``."""
    parser.add_argument("--port", type=int, default=8080, help="local port of the UI (default 8080; 0 picks a free one)")
    parser.add_argument("--open", action="store_true", help="open the UI in the default browser")
    _add_common(parser)


def register(commands: Any) -> None:
    """Add ``detect`` and ``ui`` to an ``add_subparsers()`` object (``args.func`` runs them)."""
    detect_parser = commands.add_parser("detect", help="detect garments in an image with the deployed API")
    add_arguments_detect(detect_parser)
    detect_parser.set_defaults(func=detect)
    ui_parser = commands.add_parser("ui", help="serve the browser UI for the deployed API on 127.0.0.1")
    add_arguments_ui(ui_parser)
    ui_parser.set_defaults(func=ui)
    for action, summary in (("start", "start the model the API serves for a dataset (it bills by the hour while it runs)"),
                            ("stop", "stop the model the API serves for a dataset")):  # fmt: skip
        transition = commands.add_parser(action, help=summary)
        transition.add_argument("--dataset", required=True, help=f"the dataset whose model to {action}")
        transition.add_argument("--wait", action="store_true",
                                help=f"poll GET /model until the model is {'RUNNING' if action == 'start' else 'STOPPED'}; exit 1 if it ends otherwise")
        transition.add_argument("--interval", type=float, default=10.0, help="how often --wait asks (seconds)")
        _add_common(transition)
        transition.set_defaults(func=start if action == "start" else stop)


# -- the client ------------------------------------------------------------------------
def _session(args: argparse.Namespace) -> Any:
    import boto3

    region = getattr(args, "region", None)
    return boto3.Session(region_name=region) if region else boto3.Session()


def client_for(args: argparse.Namespace) -> ApiClient:
    """An ``ApiClient`` for ``--endpoint`` or the stack's API, authenticated as the stack expects."""
    from .api_client import ApiClient, is_loopback

    endpoint = getattr(args, "endpoint", None)
    api_key = getattr(args, "api_key", None) or os.environ.get(API_KEY_ENV) or None
    if endpoint and is_loopback(endpoint):
        return ApiClient(endpoint, api_key=api_key, unsigned=True)
    session = _session(args)
    if not endpoint:
        outputs = stack_outputs_for(session, getattr(args, "stack", DEFAULT_STACK))
        endpoint = outputs.get("ApiUrl")
        if not endpoint:
            raise CommandError(f"stack {args.stack!r} has no ApiUrl output: deploy the inference API, or pass --endpoint")
        if not api_key and outputs.get("ApiKeyId"):
            api_key = _read_api_key(session, outputs["ApiKeyId"])
    return ApiClient(endpoint, api_key=api_key, session=session, region=getattr(args, "region", None), unsigned=False)


def stack_outputs_for(session: Any, stack: str) -> dict[str, str]:
    from .aws.stack import stack_outputs

    return stack_outputs(session, stack)


def _read_api_key(session: Any, key_id: str) -> str:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return str(session.client("apigateway").get_api_key(apiKey=key_id, includeValue=True)["value"])
    except (ClientError, BotoCoreError) as exc:
        raise CommandError(f"the API uses keys and the key {key_id} could not be read ({exc}): pass --api-key") from None


# -- detect ----------------------------------------------------------------------------
def _content_type(data: bytes) -> str:
    from fashion_pipeline.images import ImageError, probe_bytes

    try:
        return f"image/{probe_bytes(data).format}"
    except ImageError:
        return "application/octet-stream"  # the API says what it is and why it is refused


def garment_table(answer: dict[str, Any]) -> str:
    """The answer of ``POST /detections`` as a table: label, confidence and pixel box."""
    lines = []
    model = answer.get("model") or {}
    if model:
        f1 = model.get("f1")
        note = f"model {model.get('version', '?')} ({model.get('status', '?')}"
        note += f", F1 {f1:.3f})" if isinstance(f1, (int, float)) else ")"
        if model.get("emulated"):
            note += " [emulated: the offline Custom Labels emulator, not a trained model]"
        lines.append(note)
    image = answer.get("image") or {}
    if image:
        lines.append(f"image {image.get('width')}x{image.get('height')} {image.get('format', '')}".rstrip())
    garments = answer.get("garments") or []
    if not garments:
        lines.append("no garments found")
        return "\n".join(lines)
    width = max(12, *(len(str(g.get("label", ""))) for g in garments))
    lines.append("")
    lines.append(f"{'label':<{width}}  {'confidence':>10}  {'left':>5} {'top':>5} {'width':>5} {'height':>6}")
    for garment in garments:
        pixels = garment.get("pixels")
        box = (f"{pixels['left']:>5} {pixels['top']:>5} {pixels['width']:>5} {pixels['height']:>6}"
               if pixels else f"{'(whole image)':>24}")  # fmt: skip
        lines.append(f"{garment.get('label', '?'):<{width}}  {garment.get('confidence', 0):>9.1f}%  {box}")
    lines.append(f"\n{len(garments)} garment{'s' if len(garments) != 1 else ''}")
    return "\n".join(lines)


def _refused(exc: Exception) -> int:
    """The one line and exit status of a command that got no usable answer: 2 for a problem of
    the caller's (no stack, bad arguments), 1 when the API could not be reached or answered junk."""
    from .api_client import ApiClientError

    if isinstance(exc, (CommandError, StackNotFound)):
        print(f"fashion-pipeline: error: {exc}", file=sys.stderr)
        return 2
    if isinstance(exc, ApiClientError):
        print(f"fashion-pipeline: error: {exc}", file=sys.stderr)
        return 1
    print("fashion-pipeline: error: the API's answer is not valid JSON", file=sys.stderr)
    return 1


def _fail(response: ApiResponse) -> int:
    # The API sends Retry-After only where waiting helps, and error_message() says "retry in"
    # only then; a stopped model's message names the start route itself.
    line = response.error_message()
    print(f"fashion-pipeline: the API refused: {line}", file=sys.stderr)
    return 1


def detect(args: argparse.Namespace) -> int:
    """Send IMAGE to ``POST /detections``; print the garments; with --render save the drawing."""
    from .api_client import ApiClientError

    if args.render and Path(args.render).suffix.lower() not in RENDER_TYPES:  # the parser refuses it too
        print(f"fashion-pipeline: error: --render {args.render}: name it .png, .jpg or .jpeg (PNG or JPEG is written)", file=sys.stderr)
        return 2
    path = Path(args.image)
    try:
        data = path.read_bytes()
    except OSError as exc:
        print(f"fashion-pipeline: error: cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    try:
        client = client_for(args)
        options = {"content_type": _content_type(data), "min_confidence": args.min_confidence, "max_results": args.max_results,
                   "dataset": getattr(args, "dataset", None)}  # fmt: skip
        response = client.detect(data, **options)
        if not response.ok:
            return _fail(response)
        answer = response.json()
        print(json.dumps(answer, indent=2) if args.json else garment_table(answer))
        if args.render:
            out = Path(args.render)
            accept = RENDER_TYPES[out.suffix.lower()]
            drawing = client.detect(data, **options, accept=accept)
            if not drawing.ok:
                return _fail(drawing)
            if not drawing.content_type.startswith("image/"):
                print(f"fashion-pipeline: error: the API answered {drawing.content_type or 'no content type'}, not an image", file=sys.stderr)
                return 1
            try:
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(drawing.body)
            except OSError as exc:
                print(f"fashion-pipeline: error: --render {out}: cannot write the drawing: {exc.strerror or exc}", file=sys.stderr)
                return 2
            print(f"wrote {out} ({len(drawing.body):,} bytes)", file=sys.stderr if args.json else sys.stdout)
        return 0
    except (CommandError, StackNotFound, ApiClientError, ValueError) as exc:
        return _refused(exc)


# -- start, stop -----------------------------------------------------------------------
def _transition(args: argparse.Namespace, action: str) -> int:
    """``POST /model/<action>?dataset=NAME`` through the API, so that the auto-stop counts a
    start from now."""
    from fashion_pipeline.lifecycle import USD_PER_INFERENCE_UNIT_HOUR

    from .api_client import ApiClientError

    try:
        client = client_for(args)
        current = client.model(args.dataset)
        if not current.ok:
            return _fail(current)
        model = current.json()
        if model.get("status") == "NONE":
            print(f"fashion-pipeline: error: dataset {args.dataset!r} has no deployed model: train it (fashion-pipeline train --dataset"
                  f" {args.dataset}) or deploy a version (fashion-pipeline deploy --dataset {args.dataset} --version V)", file=sys.stderr)
            return 1
        response = client.transition(action, args.dataset)
        if not response.ok:
            return _fail(response)
        answer = response.json()
    except (CommandError, StackNotFound, ApiClientError, ValueError) as exc:
        return _refused(exc)
    summary = answer.get("model") or {}
    line = f"{summary.get('version')}: {answer.get('previous_status')} -> {summary.get('status')}; {answer.get('message', '')}"
    if action == "start":
        units = int(model.get("inference_units") or 1)
        line += (f"\nit bills {units} inference unit(s) x ${USD_PER_INFERENCE_UNIT_HOUR:g} = about ${units * USD_PER_INFERENCE_UNIT_HOUR:g}"
                 " per hour while it runs, idle or not (us-east-1 price; stop it with fashion-pipeline stop)")  # fmt: skip
    for other in answer.get("running") or []:
        line += f"\nstill billing: {other.get('arn')} ({other.get('status')}, about ${other.get('estimated_usd_per_hour')}/h)"
    print(line, flush=True)
    return _await(client, args, "RUNNING" if action == "start" else "STOPPED") if args.wait else 0


def _await(client: ApiClient, args: argparse.Namespace, wanted: str) -> int:
    """Poll ``GET /model`` until ``wanted``; a status that is neither it nor on the way to it ends the wait."""
    import time

    from .api_client import ApiClientError

    on_the_way = {"RUNNING": {"STARTING"}, "STOPPED": {"STOPPING", "RUNNING"}}[wanted]
    while True:
        try:
            current = client.model(args.dataset)
            status = current.json().get("status") if current.ok else None
        except (ApiClientError, ValueError) as exc:
            print(f"fashion-pipeline: error: while waiting: {exc}", file=sys.stderr)
            return 1
        if status == wanted:
            print(f"{wanted}", flush=True)
            return 0
        if status not in on_the_way:
            print(f"fashion-pipeline: error: the model is {status}, not {wanted}", file=sys.stderr)
            return 1
        time.sleep(args.interval)


def start(args: argparse.Namespace) -> int:
    return _transition(args, "start")


def stop(args: argparse.Namespace) -> int:
    return _transition(args, "stop")


# -- ui --------------------------------------------------------------------------------
def _reports_for(args: argparse.Namespace) -> Any:
    """The runs' reports, read from the stack's artifacts bucket with your credentials; None
    (the page's report links then answer 404 saying why) when the stack cannot be read."""
    from .webui import S3Reports

    try:
        session = _session(args)
        bucket = stack_outputs_for(session, getattr(args, "stack", DEFAULT_STACK)).get("ArtifactsBucketName")
    except Exception as exc:  # no credentials, no stack: the page works without its report links
        print(f"fashion-pipeline: reports unavailable: {exc}", file=sys.stderr)
        return None
    return S3Reports(session.client("s3"), bucket) if bucket else None

def ui(args: argparse.Namespace) -> int:
    """Serve the browser UI on 127.0.0.1, forwarding its API calls (signed) until Ctrl-C."""
    from .api_client import ApiClientError

    from .webui import RemoteBackend, serve

    try:
        client = client_for(args)
    except (CommandError, StackNotFound, ApiClientError) as exc:
        print(f"fashion-pipeline: error: {exc}", file=sys.stderr)
        return 2
    try:
        server = serve(RemoteBackend(client), port=args.port, log=lambda line: print(line, file=sys.stderr, flush=True),
                       reports=_reports_for(args))
    except OSError as exc:
        print(f"fashion-pipeline: error: cannot listen on 127.0.0.1:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(f"serving the UI for {client.endpoint} ({client.auth}) at {server.url}", flush=True)
    print("press Ctrl-C to stop", flush=True)
    if getattr(args, "open", False):
        import webbrowser

        webbrowser.open(server.url)
    try:
        while server.thread is not None and server.thread.is_alive():
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("stopping", file=sys.stderr)
    finally:
        server.shutdown()
    return 0
