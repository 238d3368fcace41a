"""The merge (lambdas/batch/handler.py ``merge``, lambdas/batch/merge.py): parts read concurrently
but written in listing order, and completeness checked from that order alone (Tally keeps one key)."""

from __future__ import annotations

import io
import json
import threading
import time

import boto3
import pytest
from moto import mock_aws

from batch import handler
from batch import merge as reading
from batch.detection import part_key
from batch.events import Job
from fashion_pipeline import layout
from fashion_pipeline.batch import Tally, completeness, error_line
from fashion_pipeline_tools.local.lambda_runtime import LambdaContext

ARTIFACTS = "artifacts"
JOB = Job(action="run", key="batch/nightly.json", job="nightly", execution="arn:aws:states:us-east-1:123456789012:execution:batch:run-1",
          run_id="run-1", received_at="2026-12-01T10:00:00Z", dataset_bucket="datasets", artifacts_bucket=ARTIFACTS)
PREFIX = layout.batch_parts_prefix("nightly", "run-1")


def line(key: str, garments: int = 1) -> dict:
    return {"key": key, "image": {"width": 640, "height": 480, "format": "JPEG"},
            "garments": [{"label": "skirt", "confidence": 91.5, "box": None, "pixels": None}] * garments}


def part(keys: list[str]) -> bytes:
    return b"".join(json.dumps(line(k), separators=(",", ":")).encode() + b"\n" for k in keys)


def batches(keys: list[str], size: int) -> list[list[str]]:
    return [keys[i:i + size] for i in range(0, len(keys), size)]


def context() -> LambdaContext:
    return LambdaContext("merge", 1024, "arn:aws:lambda:us-east-1:123456789012:function:merge", 900)


def event(batch_sizes: list[int]) -> dict:
    return {"state": {"job": JOB.model_dump(), "batches": [{"n": n} for n in batch_sizes]}}


@pytest.fixture
def s3():
    with mock_aws():
        handler.client.cache_clear()
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=ARTIFACTS)
        yield s3
    handler.client.cache_clear()


def put_parts(s3, parts: list[list[str]], bodies: list[bytes] | None = None) -> None:
    for i, keys in enumerate(parts):
        s3.put_object(Bucket=ARTIFACTS, Key=part_key(JOB, keys[0]), Body=bodies[i] if bodies else part(keys))


def results(s3) -> list[str]:
    body = s3.get_object(Bucket=ARTIFACTS, Key=layout.batch_results_key("nightly"))["Body"].read()
    return [json.loads(raw)["key"] for raw in body.splitlines()]


# -- the tally --------------------------------------------------------------------------------------
def test_the_tally_needs_each_key_greater_than_the_last_in_utf8_byte_order():
    # Code point order is UTF-8 byte order; UTF-16's (U+FF61 after U+1F600's surrogates) is not.
    keys = ["images/a.jpg", "images/b", "images/b/0.jpg", "images/z.jpg", "images/é.jpg", "images/\uff61.jpg", "images/\U0001f600.jpg"]
    assert sorted(keys, key=str.encode) == keys
    tally = Tally()
    for key in keys:
        tally.add(line(key))
    assert completeness(tally, len(keys)) is None
    assert tally.duplicates == tally.out_of_order == 0


def test_a_key_before_the_last_is_out_of_order_and_named():
    tally = Tally()
    for key in ("a.jpg", "c.jpg", "b.jpg", "d.jpg", "a.jpg"):  # a misplaced line, then a repeat further on
        tally.add(line(key))
    assert tally.out_of_order == 2 and tally.duplicates == 0
    problem = completeness(tally, 5)
    assert problem is not None and problem.startswith("2 result line(s) out of S3's listing order")
    assert "'b.jpg' after 'c.jpg'" in problem


def test_counts_are_unchanged_by_the_order_check():
    tally = Tally()
    for item in (line("a.jpg", 2), line("b.jpg", 0), error_line("c.txt", "not_an_image", "text")):
        tally.add(item)
    assert tally.to_dict() == {"images": 3, "answered": 2, "with_garments": 1, "errors": 1, "errors_by_reason": {"not_an_image": 1},
                               "garments": 2, "garments_by_label": {"skirt": 2}}
    assert completeness(tally, 4) == "3 result lines for 4 listed objects"
    assert not hasattr(tally, "keys")  # no set of keys: one key is held, whatever the job's size


# -- reading the parts ---------------------------------------------------------------------------
class ReverseGets:
    """GETs that end in the reverse of the order they were asked: each waits for the next key's
    GET to end first (the last one ends at once). Sequential reading would time out here."""

    def __init__(self, bodies: dict[str, bytes]) -> None:
        self.bodies, self.order = bodies, list(bodies)
        self.done = {key: threading.Event() for key in self.order}
        self.ended: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, key: str) -> bytes:
        i = self.order.index(key)
        if i + 1 < len(self.order) and not self.done[self.order[i + 1]].wait(timeout=5):
            raise TimeoutError(f"GET {key}: the next part's GET never ended (the parts were not read concurrently)")
        with self.lock:
            self.ended.append(key)
        self.done[key].set()
        return self.bodies[key]


def test_parts_read_concurrently_are_handed_on_in_listing_order():
    keys = [f"p{i:02d}" for i in range(12)]
    gets = ReverseGets({k: k.encode() for k in keys})
    got = list(reading.fetch(gets, keys, concurrency=12, window=12))
    assert gets.ended == keys[::-1]  # the GETs really did end in reverse
    assert [k for k, _ in got] == keys and [b for _, b in got] == [k.encode() for k in keys]


def test_at_most_a_window_of_parts_is_held():
    held, most, lock = set(), [0], threading.Lock()

    def get(key: str) -> bytes:
        with lock:
            held.add(key)
            most[0] = max(most[0], len(held))
        return key.encode()

    for key, _ in reading.fetch(get, (f"k{i:04d}" for i in range(500)), concurrency=4, window=8):
        with lock:
            held.discard(key)
    assert 1 < most[0] <= 8


def test_a_failed_get_raises_in_its_turn_and_stops_the_rest():
    asked = []

    def get(key: str) -> bytes:
        asked.append(key)
        if key == "k0003":
            raise RuntimeError("AccessDenied")
        time.sleep(0.001)
        return b""

    seen = []
    with pytest.raises(RuntimeError, match="AccessDenied"):
        for key, _ in reading.fetch(get, (f"k{i:04d}" for i in range(10_000)), concurrency=4, window=8):
            seen.append(key)
    assert seen == ["k0000", "k0001", "k0002"] and len(asked) < 100


# -- the merge, end to end in moto -----------------------------------------------------------------
def test_merge_writes_every_part_in_listing_order(s3):
    keys = sorted((f"images/d/{i:04d}.jpg" for i in range(250)), key=str.encode)
    put_parts(s3, batches(keys, 100))
    summary = handler.merge(event([100, 100, 50]), context())
    assert results(s3) == keys
    assert summary["listed"] == summary["images"] == 250 and summary["garments"] == 250


def test_a_key_in_two_parts_fails_the_merge_naming_it(s3):
    keys = [f"images/d/{i:03d}.jpg" for i in range(20)]
    parts = [keys[:10], keys[9:]]  # the 10th object in both: a child's batch overlapping the next
    put_parts(s3, parts)
    with pytest.raises(handler.IncompleteResults, match=r"1 object\(s\) have more than one result line \(the first: 'images/d/009.jpg'\)"):
        handler.merge(event([10, 11]), context())
    assert "Contents" not in s3.list_objects_v2(Bucket=ARTIFACTS, Prefix=layout.batch_results_key("nightly"))


def test_a_key_out_of_order_fails_the_merge_naming_it(s3):
    first, second = ["images/d/000.jpg", "images/d/002.jpg", "images/d/001.jpg"], ["images/d/003.jpg"]
    put_parts(s3, [first, second])
    with pytest.raises(handler.IncompleteResults, match=r"out of S3's listing order.*'images/d/001.jpg' after 'images/d/002.jpg'"):
        handler.merge(event([3, 1]), context())


def test_a_missing_line_is_still_counted(s3):
    put_parts(s3, [["images/d/0.jpg", "images/d/1.jpg"]])
    with pytest.raises(handler.IncompleteResults, match="2 result lines for 3 listed objects"):
        handler.merge(event([3]), context())


def test_parts_whose_first_keys_share_200_bytes_are_merged_in_key_order(s3):
    # part_key keeps 200 bytes of the first key and a digest: these parts list in digest order.
    stem = "images/" + "x" * 250
    keys = [f"{stem}/{i:02d}.jpg" for i in range(24)]
    parts = batches(keys, 3)
    names = [part_key(JOB, p[0]) for p in parts]
    assert sorted(names) != names  # the listing alone would misorder them
    put_parts(s3, parts)
    summary = handler.merge(event([3] * 8), context())
    assert results(s3) == keys and summary["images"] == 24


class FakeS3:
    """Lists the parts and answers their GETs in reverse order (ReverseGets); records the PUT."""

    def __init__(self, parts: dict[str, bytes]) -> None:
        self.gets = ReverseGets(parts)
        self.puts: dict[str, bytes] = {}

    def get_paginator(self, name: str):
        assert name == "list_objects_v2"
        keys = sorted(self.gets.bodies)
        return type("Paginator", (), {"paginate": lambda _, **kw: [{"Contents": [{"Key": k} for k in keys if k.startswith(kw["Prefix"])]}]})()

    def get_object(self, Bucket: str, Key: str) -> dict:
        return {"Body": io.BytesIO(self.gets(Key))}

    def put_object(self, Bucket: str, Key: str, Body, ContentType: str) -> None:
        self.puts[Key] = Body if isinstance(Body, bytes) else Body.read()  # the summary's bytes, the results' file


def test_the_handler_reads_parts_concurrently_and_writes_them_in_listing_order(s3, monkeypatch):
    keys = [f"images/d/{i:04d}.jpg" for i in range(300)]
    fake = FakeS3({part_key(JOB, p[0]): part(p) for p in batches(keys, 10)})
    monkeypatch.setattr(handler, "client", lambda name: fake)  # the merge's only client
    summary = handler.merge(event([10] * 30), context())
    assert fake.gets.ended == sorted(fake.gets.bodies)[::-1]  # 30 GETs in flight, ending last first
    written = fake.puts[layout.batch_results_key("nightly")]
    assert [json.loads(raw)["key"] for raw in written.splitlines()] == keys and summary["images"] == 300


class CountingS3(FakeS3):
    """Answers every GET at once, counting them."""

    def __init__(self, parts: dict[str, bytes]) -> None:
        super().__init__(parts)
        self.asked = 0
        self.lock = threading.Lock()

    def get_object(self, Bucket: str, Key: str) -> dict:
        with self.lock:
            self.asked += 1
        return {"Body": io.BytesIO(self.gets.bodies[Key])}


def test_a_failed_merge_stops_reading_at_its_window(s3, monkeypatch):
    keys = [f"images/d/{i:05d}.jpg" for i in range(2000)]
    parts = batches(keys, 10)
    parts[1] = parts[1] + [parts[2][0]]  # the third part's first key, also at the end of the second
    fake = CountingS3({part_key(JOB, p[0]): part(p) for p in parts})
    monkeypatch.setattr(handler, "client", lambda name: fake)  # the merge's only client
    with pytest.raises(handler.IncompleteResults, match="images/d/00020.jpg"):
        handler.merge(event([len(p) for p in parts]), context())
    assert fake.asked <= 3 + reading.WINDOW + reading.CONCURRENCY < len(parts)
    assert layout.batch_results_key("nightly") not in fake.puts
