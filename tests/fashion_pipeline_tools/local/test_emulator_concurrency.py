"""The Custom Labels emulator behind moto's threaded server serves a model description while
a DetectCustomLabels call decodes a large image: in local mode the API's ``GET /model``
(DescribeProjectVersions) must not wait for a concurrent ``POST /detections`` on a big photo."""

import io
import os
import threading
import time
import urllib.request

import boto3
from moto.server import ThreadedMotoServer
from PIL import Image

from tests.fashion_pipeline_tools.local.test_custom_labels_emulator import (
    BUCKET, NO_RETRY, describe_version, emulator, make_model, put_data, wait,  # noqa: F401 - emulator is a fixture
)


def big_photo() -> bytes:
    """A 4,096 px square of noise (the largest side Custom Labels takes): seconds to decode,
    within the 15 MB an S3 image may have."""
    side = 4096
    out = io.BytesIO()
    Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(out, format="JPEG", quality=90)
    return out.getvalue()


def test_describing_the_model_does_not_wait_for_a_detection_decoding_an_image(emulator):
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        kwargs = {"region_name": "us-east-1", "endpoint_url": endpoint, "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
        put_data(boto3.client("s3", **kwargs))
        boto3.client("s3", **kwargs).put_object(Bucket=BUCKET, Key="img/big.jpg", Body=big_photo())
        rek = boto3.client("rekognition", config=NO_RETRY, **kwargs)
        project, version = make_model(rek)
        wait(describe_version(rek, project), [], {"TRAINING_COMPLETED"})
        rek.start_project_version(ProjectVersionArn=version, MinInferenceUnits=1)
        wait(describe_version(rek, project), [], {"RUNNING"})
        describe = describe_version(boto3.client("rekognition", config=NO_RETRY, **kwargs), project)
        describe()  # the second client's endpoint resolution and connection, before timing

        detections: list[float] = []

        def detect() -> None:
            started = time.monotonic()
            rek.detect_custom_labels(ProjectVersionArn=version, Image={"S3Object": {"Bucket": BUCKET, "Name": "img/big.jpg"}})
            detections.append(time.monotonic() - started)

        detect()  # alone: how long the emulator takes for this image on this machine
        alone = detections.pop()
        for _ in range(3):  # the slowest of three: one slow answer on a loaded machine is not a wait
            calls = len(emulator.calls)
            detecting = threading.Thread(target=detect)
            detecting.start()
            while len(emulator.calls) == calls:  # the emulator has the call: it is decoding now
                time.sleep(0.005)
            started = time.monotonic()
            assert describe()["Status"] == "RUNNING"
            described = time.monotonic() - started
            detecting.join()
            if described < 0.3 * alone:
                break
        # Describe takes a few ms unlocked; 0.1 s of decoding still tells a wait (>= 0.3 x) from none.
        assert alone > 0.1, f"the image decodes in {alone:.2f} s: too quick to tell a wait from none"
        assert described < 0.3 * alone, f"DescribeProjectVersions took {described:.2f} s beside a {alone:.2f} s DetectCustomLabels"
    finally:
        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"))
        server.stop()
