"""One child's lines (lambdas/batch/detection.py) against fake S3 and Rekognition clients: every
object one line, throttling retried a bounded number of times, our own denials raised."""

from __future__ import annotations

import io

import pytest
from botocore.exceptions import ClientError
from PIL import Image

from batch.detection import Detector, part_key
from batch.events import Job, ListedObject, Model
from fashion_pipeline.batch import RETRY_ATTEMPTS, RETRY_BASE_SECONDS, RETRY_CAP_SECONDS

BUCKET = "datasets"
ANSWER = {"CustomLabels": [{"Name": "skirt", "Confidence": 91.5,
                            "Geometry": {"BoundingBox": {"Left": 0.25, "Top": 0.5, "Width": 0.5, "Height": 0.25}}}]}


def png(width=200, height=100) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(out, format="PNG")
    return out.getvalue()


def error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": f"{code} from the fake"}}, "Operation")


class FakeS3:
    def __init__(self, objects):
        self.objects = objects
        self.puts = {}

    def get_object(self, Bucket, Key, Range=None):
        if Key not in self.objects:
            raise error("NoSuchKey")
        data = self.objects[Key]
        if Range is None:
            return {"Body": io.BytesIO(data), "ContentLength": len(data)}
        start, end = (int(x) for x in Range[len("bytes="):].split("-"))
        return {"Body": io.BytesIO(data[start:end + 1]), "ContentRange": f"bytes {start}-{end}/{len(data)}"}

    def put_object(self, Bucket, Key, Body, ContentType=None):
        self.puts[Key] = Body


class FakeRekognition:
    def __init__(self, *outcomes):
        self.outcomes = list(outcomes)
        self.calls = []

    def detect_custom_labels(self, **params):
        self.calls.append(params)
        outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


def job(**changes) -> Job:
    model = Model(arn="arn:aws:rekognition:us-east-1:1:project/fashion-pipeline-demo/version/v/1", project_arn="p",
                  version_name="v", status="RUNNING", inference_units=1)
    return Job(action="run", key="batch/j.json", job="j", execution="arn:e:run1", run_id="run1", received_at="2026-01-01T00:00:00Z",
               dataset_bucket=BUCKET, artifacts_bucket="artifacts", dataset="demo", source_prefix="images/demo/", model=model,
               **changes)


def detector(objects, *outcomes, **changes):
    sleeps = []
    found = Detector(FakeS3(objects), FakeRekognition(*outcomes), job(**changes), sleep=sleeps.append, jitter=lambda: 1.0)
    return found, sleeps


def item(key, objects):
    return ListedObject(Key=key, Size=len(objects.get(key, b"x")))


def test_a_detected_image_has_its_garments_in_ratios_and_pixels():
    objects = {"images/demo/a.png": png()}
    found, _ = detector(objects, ANSWER)
    line = found.line(item("images/demo/a.png", objects))
    assert line["image"] == {"width": 200, "height": 100, "format": "png"}
    [garment] = line["garments"]
    assert garment["box"] == {"left": 0.25, "top": 0.5, "width": 0.5, "height": 0.25}
    assert garment["pixels"] == {"left": 50, "top": 50, "width": 100, "height": 25}
    [call] = found.rekognition.calls
    assert call["Image"] == {"S3Object": {"Bucket": BUCKET, "Name": "images/demo/a.png"}} and "MinConfidence" not in call


def test_throttling_is_retried_with_capped_backoff_then_answered():
    objects = {"images/demo/a.png": png()}
    found, sleeps = detector(objects, error("ProvisionedThroughputExceededException"), error("ThrottlingException"), ANSWER)
    assert found.line(item("images/demo/a.png", objects))["garments"]
    assert sleeps == [RETRY_BASE_SECONDS, 2 * RETRY_BASE_SECONDS] and found.throttled == 2


def test_throttling_that_outlasts_the_retries_is_the_images_error_line():
    objects = {"images/demo/a.png": png()}
    found, sleeps = detector(objects, error("ProvisionedThroughputExceededException"))
    line = found.line(item("images/demo/a.png", objects))
    assert line["error"]["reason"] == "throttled" and f"after {RETRY_ATTEMPTS} attempt(s)" in line["error"]["message"]
    assert len(found.rekognition.calls) == RETRY_ATTEMPTS and len(sleeps) == RETRY_ATTEMPTS - 1
    assert max(sleeps) <= RETRY_CAP_SECONDS and sum(sleeps) <= 16


def test_no_backoff_sleeps_past_the_batchs_deadline():
    objects = {"images/demo/a.png": png()}
    now = [0.0]
    found = Detector(FakeS3(objects), FakeRekognition(error("ThrottlingException")), job(), deadline=1.2,
                     sleep=lambda pause: now.__setitem__(0, now[0] + pause), jitter=lambda: 1.0, clock=lambda: now[0])
    line = found.line(item("images/demo/a.png", objects))
    # 0.5 s, then 1 s would end at 1.5 s, past the deadline: the image is reported instead.
    assert line["error"]["reason"] == "throttled" and "after 2 attempt(s) (no time left in the batch" in line["error"]["message"]
    assert now[0] == 0.5 and len(found.rekognition.calls) == 2


@pytest.mark.parametrize(("code", "reason"), [
    ("InvalidImageFormatException", "image_corrupt"), ("ImageTooLargeException", "image_too_large"),
    ("InvalidS3ObjectException", "image_missing"), ("ResourceNotReadyException", "model_not_running"),
    ("InvalidParameterException", "image_rejected"), ("InternalServerError", "service_error"),
])
def test_what_rekognition_refuses_for_one_image_is_that_images_line(code, reason):
    objects = {"images/demo/a.png": png()}
    found, _ = detector(objects, error(code))
    line = found.line(item("images/demo/a.png", objects))
    assert line["error"]["reason"] == reason and code in line["error"]["message"]


def test_our_own_denial_fails_the_batch():
    objects = {"images/demo/a.png": png()}
    found, _ = detector(objects, error("AccessDeniedException"))
    with pytest.raises(ClientError, match="AccessDeniedException"):
        found.line(item("images/demo/a.png", objects))


def test_objects_that_are_no_image_are_error_lines_without_a_detection():
    objects = {"images/demo/notes.txt": b"hello there, not pixels", "images/demo/anim.gif": b"GIF89a" + bytes(64),
               "images/demo/tiny.png": png(10, 10), "images/demo/broken.png": png()[:20]}
    found, _ = detector(objects, ANSWER)
    reasons = {key: found.line(item(key, objects))["error"]["reason"] for key in objects}
    assert reasons == {"images/demo/notes.txt": "not_an_image", "images/demo/anim.gif": "not_an_image",
                       "images/demo/tiny.png": "image_dimensions", "images/demo/broken.png": "image_corrupt"}
    assert found.line(ListedObject(Key="images/demo/big.jpg", Size=16 * 1024 * 1024))["error"]["reason"] == "image_too_large"
    assert found.line(ListedObject(Key="images/demo/empty.jpg", Size=0))["error"]["reason"] == "image_corrupt"
    assert found.line(ListedObject(Key="images/demo/gone.jpg", Size=10))["error"]["reason"] == "image_missing"
    assert found.line(ListedObject(Key="images/demo/folder/", Size=0))["error"]["reason"] == "not_an_image"
    assert not found.rekognition.calls


def test_a_rendered_image_is_written_beside_the_results():
    objects = {"images/demo/a.png": png()}
    found, _ = detector(objects, ANSWER, render=True, min_confidence=50.0)
    line = found.line(item("images/demo/a.png", objects))
    assert line["rendered"] == "batch/j/rendered/images/demo/a.png.png"
    assert found.s3.puts[line["rendered"]][:8] == b"\x89PNG\r\n\x1a\n"
    assert found.rekognition.calls[0]["MinConfidence"] == 50.0


def test_parts_list_in_the_order_of_their_first_keys():
    # S3 lists keys in UTF-8 byte order ("images/b" before "images/b/0.jpg" before "images/b0.jpg", "z" before "é").
    keys = ["images/a.jpg", "images/b", "images/b/0.jpg", "images/b0.jpg", "images/z" + "y" * 500 + ".jpg", "images/é.jpg"]
    assert sorted(keys, key=str.encode) == keys
    parts = [part_key(job(), key) for key in keys]
    assert sorted(parts) == parts and all(p.startswith("batch/j/parts/run1/") for p in parts)
    assert len(set(parts)) == len(parts) and max(len(p.encode()) for p in parts) < 1024
