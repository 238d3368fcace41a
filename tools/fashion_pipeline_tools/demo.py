"""``make demo``: the whole pipeline, offline, as a user would drive it.

Starts local mode, generates a DeepFashion2-format sample (with one input per kind of
fault), uploads it the way a user would, waits for conversion, trains (emulated), deploys,
sends images through the inference API, writes the rendered answers to ``demo-output/``
and prints what happened at each stage.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import urllib.request
from pathlib import Path

from .cli import main as cli

OUT = Path("demo-output")
DATASET = "demo"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _stage(title: str) -> float:
    print(f"\n== {title}", flush=True)
    return time.monotonic()


def _done(started: float, text: str) -> None:
    print(f"   {text} ({time.monotonic() - started:.1f} s)", flush=True)


def _post(url: str, body: bytes, content_type: str, accept: str) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": content_type, "Accept": accept})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def main() -> int:
    import boto3

    from .local.server import OPERATOR_KEYS, start
    from .sample import generate

    began = time.monotonic()
    t = _stage("starting local mode (synthesizes the CDK app, then emulates its resources)")
    local = start(port=_free_port(), api_port=_free_port())
    # The demo drives local mode as its user does, with the keys the README tells them to export.
    os.environ.update(dict(zip(("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"), OPERATOR_KEYS)))
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE"):
        os.environ.pop(name, None)
    info = local.info()
    _done(t, json.dumps(info))
    try:
        s3 = boto3.client("s3")  # AWS_ENDPOINT_URL points at local mode from here on
        bucket = info["dataset_bucket"]

        t = _stage("generating the sample dataset (40 images, every category, plus planted faults)")
        sample = generate(OUT / "sample", images=40, seed=7, defects=True)
        _done(t, f"{len(sample.files)} annotation files, {len(list(sample.images.iterdir()))} images")

        t = _stage("uploading images, then annotations (each upload triggers conversion)")
        for image in sorted(sample.images.iterdir()):
            s3.upload_file(str(image), bucket, f"images/{DATASET}/{image.name}")
        for name in sample.files:
            s3.upload_file(str(sample.annotations / name), bucket, f"annotations/{DATASET}/{name}")
        artifacts = info["artifacts_bucket"]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            reports = s3.list_objects_v2(Bucket=artifacts, Prefix=f"reports/{DATASET}/").get("KeyCount", 0)
            if reports >= len(sample.files):
                break
            time.sleep(0.5)
        rejected: dict[str, int] = {}
        for obj in s3.list_objects_v2(Bucket=artifacts, Prefix=f"reports/{DATASET}/").get("Contents", []):
            for entry in json.loads(s3.get_object(Bucket=artifacts, Key=obj["Key"])["Body"].read())["rejected"]:
                rejected[entry["reason"]] = rejected.get(entry["reason"], 0) + 1
        _done(t, f"{reports} objects converted; rejected by reason: {json.dumps(rejected, sort_keys=True)}")

        t = _stage("training: fashion-pipeline train --dataset demo --wait")
        if cli(["train", "--dataset", DATASET, "--wait", "--interval", "1"]) != 0:
            return 1
        runs = s3.list_objects_v2(Bucket=artifacts, Prefix=f"runs/{DATASET}/")["Contents"]
        summary_key = max(o["Key"] for o in runs if o["Key"].endswith("summary.json"))
        summary = json.loads(s3.get_object(Bucket=artifacts, Key=summary_key)["Body"].read())
        print(f"   manifests: {summary['train']['images']} train / {summary['test']['images']} test lines, "
              f"{len(summary['class_map'])} labels; left out: {json.dumps(summary['rejections']['by_reason'], sort_keys=True)}")
        _done(t, "trained, evaluated and deployed (emulated Custom Labels)")

        t = _stage("detecting garments through the inference API")
        OUT.mkdir(exist_ok=True)
        detections = info["api_url"].rstrip("/") + "/detections"
        manifest_key = max(o["Key"] for o in runs if o["Key"].endswith("train.manifest"))
        trained = [json.loads(line)["source-ref"].rsplit("/", 1)[1]
                   for line in s3.get_object(Bucket=artifacts, Key=manifest_key)["Body"].read().splitlines()]
        unseen = sorted({p.name for p in sample.images.iterdir()} - set(trained))
        for name, kind_of_image in [(trained[0], "training image"), (trained[1], "training image"), (unseen[0], "test image")]:
            image = sample.images / name
            kind = "image/png" if image.suffix == ".png" else "image/jpeg"
            status, body = _post(detections, image.read_bytes(), kind, "application/json")
            garments = json.loads(body).get("garments", [])
            truth = json.loads((sample.annotations / (image.stem + ".json")).read_text())
            boxes = sorted(truth[k]["bounding_box"] for k in truth if k.startswith("item"))
            found = sorted([g["pixels"]["left"], g["pixels"]["top"], g["pixels"]["left"] + g["pixels"]["width"],
                            g["pixels"]["top"] + g["pixels"]["height"]] for g in garments)
            if kind_of_image == "training image":
                verdict = "boxes match the annotation" if found == boxes else f"boxes differ: {found} vs {boxes}"
            else:
                verdict = "the emulated model only knows its training images, so it finds nothing: honest"
            print(f"   {name} ({kind_of_image}): HTTP {status}, {len(garments)} garments "
                  f"[{', '.join(g['label'] + ' ' + format(g['confidence'], '.0f') + '%' for g in garments)}]; {verdict}")
            status, png = _post(detections, image.read_bytes(), kind, "image/png")
            if status == 200:
                (OUT / f"{image.stem}.detections.png").write_bytes(png)
        status, body = _post(detections, b"GIF89a" + bytes(64), "image/jpeg", "application/json")
        print(f"   a GIF sent as JPEG: HTTP {status} {json.loads(body)['error']['code']}")
        _done(t, f"rendered answers written to {OUT}/*.detections.png")
        # The demo's own local mode stops when it ends, so its address would be dead by now.
        print("\nTo try the web page: `fashion-pipeline local up` serves it (the address is in its JSON line)")
        print(f"demo finished in {time.monotonic() - began:.1f} s")
        return 0
    finally:
        local.shutdown()


if __name__ == "__main__":
    sys.exit(main())
