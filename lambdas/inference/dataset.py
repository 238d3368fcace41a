"""Images of the dataset bucket named by ``s3_key``: their header (ranged GETs) or all of them.

Error names: GetObject's in botocore's s3 model (NoSuchKey, InvalidObjectState) and S3's
common ones (https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html#ErrorCodeList):
AccessDenied (what S3 says for a missing key without s3:ListBucket) and InvalidRange (only an
empty object has no byte 0). Throttling (SlowDown) is ``runtime.aws_call``'s.
"""

from __future__ import annotations

from botocore.exceptions import ClientError

from fashion_pipeline.images import MAX_FILE_BYTES, ImageError, ImageInfo, check_rules, probe
from inference.errors import ImageNotFound, ImageRejected, ImageTooLarge, image_refusal
from inference.observability import tracer
from inference.runtime import Runtime, aws_call, current, error_code


class DatasetImages:
    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    @tracer.capture_method(capture_response=False)
    def probe(self, key: str) -> ImageInfo:
        """Type and size of an image from its first bytes, checked against Rekognition's rules."""
        s3, bucket = self._runtime.client("s3"), self._runtime.settings.dataset_bucket
        total: list[int] = []

        def read_at(offset: int, length: int) -> bytes:
            answer = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={offset}-{offset + length - 1}")
            if not total:
                total.append(int(str(answer.get("ContentRange", "/0")).rsplit("/", 1)[-1] or 0) or int(answer.get("ContentLength", 0)))
            return answer["Body"].read()

        try:
            with aws_call("S3"):
                info, _ = probe(read_at)
            check_rules(info, total[0] if total else 0)
        except ImageError as exc:
            raise image_refusal(exc) from None
        except ClientError as exc:
            raise _refusal(exc, key) from None
        return info

    @tracer.capture_method(capture_response=False)
    def read(self, key: str) -> bytes:
        """The whole object (for the drawing), at most 15 MB."""
        try:
            with aws_call("S3"):
                answer = self._runtime.client("s3").get_object(Bucket=self._runtime.settings.dataset_bucket, Key=key)
        except ClientError as exc:
            raise _refusal(exc, key) from None
        if int(answer.get("ContentLength", 0)) > MAX_FILE_BYTES:
            raise ImageTooLarge(f"{key} is {answer['ContentLength']} bytes; the limit is {MAX_FILE_BYTES} bytes (15 MB)")
        return answer["Body"].read()


def _refusal(exc: ClientError, key: str) -> Exception:
    code = error_code(exc)
    if code in ("NoSuchKey", "AccessDenied"):
        return ImageNotFound(f"no object {key} in the dataset bucket")
    if code == "InvalidObjectState":  # archived (Glacier): not readable without a restore
        return ImageNotFound(f"{key} is archived in the dataset bucket and cannot be read")
    if code == "InvalidRange":
        return ImageRejected("image_corrupt", f"the image cannot be decoded: {key} is empty")
    return exc


def dataset_images() -> DatasetImages:
    """The dataset bucket of this container's runtime."""
    return DatasetImages(current())
