"""An emulator of the Amazon Rekognition Custom Labels API, installed into moto.

This is an emulator, not a model and not AWS. moto 5 has a Rekognition backend but no Custom
Labels operations; ``install()`` adds them to moto's ``RekognitionResponse`` so that boto3
clients under ``mock_aws()``, clients of an in-process ``ThreadedMotoServer`` and moto's Step
Functions interpreter (whose aws-sdk tasks are boto3 calls) can run the whole lifecycle.

What it does:

* refuses what the service refuses: every request is checked against botocore's Rekognition
  model (required members, types, enums, lengths, patterns of names, ARNs and tags; see
  ``service_model``) and answered InvalidParameterException; every error it raises is one the
  model lists for that operation (``inject_error`` refuses any other name);
* acts with the caller's permissions, as the current API does ("Set up SDK permissions",
  Custom Labels developer guide): when IAM is enforced (``authorization``), CreateDataset reads
  the manifest and every image as its caller, and training writes its output as the caller of
  CreateProjectVersion. A denial fails the dataset or the training with the service's terminal
  error (ERROR_INVALID_PERMISSIONS_MANIFEST_S3_BUCKET, ERROR_INVALID_PERMISSIONS_IMAGES_S3_BUCKET,
  ERROR_CANNOT_WRITE_OUTPUT_S3_BUCKET) followed by the AccessDenied message naming the action;
* keeps projects, datasets and model versions per account and region on moto's Rekognition
  backend, so moto's reset (``mock_aws`` start/stop) clears them;
* reads a dataset's manifest and every image it names from moto S3 when the dataset is
  created; a line is an error entry unless it is JSON with an ``s3://`` ``source-ref`` whose
  image decodes (a truncated JPEG or PNG does not) within Custom Labels' limits, and one or more
  ``*-metadata`` attributes of type ``groundtruth/object-detection`` (``image_size`` one element
  matching the image, one ``objects`` item per box, every ``class_id`` a key of ``class-map``,
  boxes inside the image) or ``groundtruth/image-classification`` (a ``class-name``). A bad box
  makes the whole line an error entry (the service may drop just the box); images in more than
  one bucket fail the dataset (ERROR_IMAGES_IN_MULTIPLE_S3_BUCKETS);
* moves asynchronous statuses (dataset creation and deletion, training, start, stop, model and
  project deletion) on Describe calls, never on wall-clock time: with N ticks, N Describe calls
  still see the in-progress status and the next one sees the outcome (a dataset's creation
  moves on DescribeDataset, its deletion on DescribeDataset or DescribeProjects). A dataset being deleted
  keeps its place in the project (CreateDataset of its type: ResourceAlreadyExistsException)
  until it is gone;
* "trains" a memoriser: the model records the sha256 of every training image and its labels.
  DetectCustomLabels returns exactly those labels for a byte-identical image (boxes as ratios
  of the image size, Confidence 99.0) and nothing for any other image;
* evaluates that memoriser honestly on the test dataset: predictions meet ground truth of
  the same label greedily at IoU >= 0.5; per label TP/FP/FN give precision, recall and F1
  (0/0 counts as 0), the aggregate is micro-averaged and every label's Threshold is 0.5. So a
  model tested on images it never saw scores F1 0. The training results summary file
  (``EvaluationSummary-{project}-{version}.json``) and the manifest snapshots of the test set
  (each prediction with its confidence, 0.99, and ``rekognition-custom-labels-evaluation-details``:
  true positive when it met a ground truth, else false positive; the TP/FP/FN they add up to are
  the summary's) and of the training set go to the output location in S3, as the caller of
  CreateProjectVersion, and TestingDataResult/TrainingDataResult.Output name the snapshots;
* fault modes for tests of every failure path: ``inject_error`` (throttling, internal errors),
  ``fail_next_dataset``, ``fail_next_training``, and ``strip`` (a Describe answer without some
  of its optional members, as the model allows).

What it does not do: learn or generalise; report AveragePrecision, AverageRecall or a
confusion matrix; write validation manifests (no ``Validation`` in the results); enforce service quotas or
the "too many invalid rows" ratio; emulate UpdateDatasetEntries, ListDatasetEntries, tagging
calls (tags given on create are checked, not kept), copying models, project policies, training from
``TrainingData``/``TestingData`` manifests (the older API; datasets are required) or content
moderation. Which of the S3 actions the guide lists Custom Labels really checks is not
documented; the emulator requires s3:GetObject on the manifest and each image and s3:PutObject
on the output, the ones the API reference names. Whether a STARTING model can be stopped is
not documented either; the emulator refuses it (ResourceInUseException), the stricter reading.
Status messages are plausible English after the service's error codes, not its exact text.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from moto.core.exceptions import JsonRESTError
from moto.core.utils import camelcase_to_underscores
from moto.rekognition.responses import RekognitionResponse
from moto.s3.exceptions import S3ClientError
from moto.s3.models import s3_backends

from fashion_pipeline.images import MAX_FILE_BYTES, ImageError, check_rules, probe_bytes
from . import authorization, service_model

CONFIDENCE = 99.0  # percent; the memoriser is sure of what it has seen, but never claims 100
THRESHOLD = 0.5  # the per-label "Threshold" written to the summary (0-1, as in the real file)
IOU_MATCH = 0.5  # a prediction is a true positive when it overlaps a same-label truth this much
MAX_REQUEST_IMAGE_BYTES = 4 * 1024 * 1024  # DetectCustomLabels limit for Image.Bytes
OPERATIONS = (
    "CreateProject", "DescribeProjects", "DeleteProject",
    "CreateDataset", "DescribeDataset", "DeleteDataset",
    "CreateProjectVersion", "DescribeProjectVersions", "DeleteProjectVersion",
    "StartProjectVersion", "StopProjectVersion", "DetectCustomLabels",
)  # fmt: skip
_HTTP_STATUS = {"InternalServerError": 500}
_DETECTION, _CLASSIFICATION = "groundtruth/object-detection", "groundtruth/image-classification"


class ServiceError(JsonRESTError):
    """An API error as boto3 sees it: ClientError with this code and HTTP status."""

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(code, message)
        self.code = status or _HTTP_STATUS.get(code, 400)


def _modelled(operation: str, code: str) -> None:
    if code not in service_model.modelled_errors("rekognition", operation):
        raise ValueError(f"{code} is not an error of Rekognition's {operation} (botocore's model lists "
                         f"{', '.join(sorted(service_model.modelled_errors('rekognition', operation)))})")


@dataclass
class Settings:
    dataset_ticks: int = 1
    training_ticks: int = 2
    start_ticks: int = 1
    stop_ticks: int = 1
    delete_ticks: int = 1


@dataclass(frozen=True)
class Label:
    name: str
    box: tuple[float, float, float, float] | None  # left, top, width, height as ratios; None: image-level


@dataclass(frozen=True)
class Entry:
    source_ref: str
    sha256: str
    labels: tuple[Label, ...]
    size: tuple[int, int] = (0, 0)  # the image's width and height in pixels


@dataclass
class Manifest:
    """What a dataset source yielded; ``failure`` is a terminal error for the whole dataset."""

    entries: list[Entry] = field(default_factory=list)
    total: int = 0
    errors: int = 0
    problems: list[str] = field(default_factory=list)
    failure: str | None = None


@dataclass
class Project:
    arn: str
    name: str
    created: float
    feature: str
    datasets: dict[str, str] = field(default_factory=dict)  # TRAIN/TEST -> dataset ARN
    status: str = "CREATED"
    ticks: int = 0


@dataclass
class Dataset:
    arn: str
    project_arn: str
    kind: str
    created: float
    result: Manifest  # computed at creation, revealed when the ticks run out
    ticks: int
    status: str = "CREATE_IN_PROGRESS"
    updated: float = 0.0
    source: dict[str, Any] | None = None  # the manifest's S3Object, for TrainingDataResult


@dataclass
class Version:
    arn: str
    name: str
    project: Project
    created: float
    output: dict[str, Any]
    train: list[Entry]
    test: list[Entry]
    inputs: tuple[list[dict[str, Any]], list[dict[str, Any]]]  # manifest assets of train, test
    failure: str | None
    ticks: int
    caller: Any = None  # who called CreateProjectVersion: training output is written as them
    start_ends: tuple[str, str | None] | None = None  # a fault: how the pending start ends
    status: str = "TRAINING_IN_PROGRESS"
    message: str = "The model is being trained."
    ended: float | None = None
    evaluation: dict[str, Any] | None = None
    outputs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # training/testing -> snapshot assets
    units: tuple[int, int] | None = None
    memory: dict[str, Entry] = field(default_factory=dict)  # sha256 of a training image -> its entry


@dataclass
class Store:
    projects: dict[str, Project] = field(default_factory=dict)
    datasets: dict[str, Dataset] = field(default_factory=dict)
    versions: dict[str, Version] = field(default_factory=dict)


class Controller:
    """Test-side handle: timing, fault injection and a log of the calls the emulator served."""

    def __init__(self) -> None:
        self._lock = threading.RLock()  # ThreadedMotoServer serves requests on several threads
        self.reset()

    def reset(self) -> None:
        """Default settings, no pending faults, empty call log (moto resets the resources)."""
        with self._lock:
            self._settings = Settings()
            self._faults: dict[str, list[tuple[str, str, int | None]]] = {}
            self._strips: dict[str, list[tuple[str, ...]]] = {}
            self._fail_training: str | None = None
            self._fail_dataset: str | None = None
            self._start_ends: tuple[str, str | None] | None = None
            self.calls: list[tuple[str, dict[str, Any]]] = []

    def settings(self, **changes: int) -> Settings:
        """Change tick counts (``dataset_ticks``, ``training_ticks``, ``start_ticks``,
        ``stop_ticks``, ``delete_ticks``); returns the settings now in force. Affects resources
        created (or deleted) later."""
        with self._lock:
            for name, value in changes.items():
                if name not in Settings.__dataclass_fields__ or not isinstance(value, int) or value < 0:
                    raise ValueError(f"unknown setting or bad value: {name}={value!r}")
                setattr(self._settings, name, value)
            return Settings(**asdict(self._settings))

    def inject_error(self, operation: str, code: str, message: str = "Error injected by the Custom Labels emulator", times: int = 1, status: int | None = None) -> None:
        """The next ``times`` calls of ``operation`` fail with ``code``, an error botocore's model
        lists for the operation (HTTP 400, or 500 for InternalServerError, unless ``status``)."""
        if operation not in OPERATIONS:
            raise ValueError(f"{operation!r} is not an emulated operation: {OPERATIONS}")
        _modelled(operation, code)
        with self._lock:
            self._faults.setdefault(operation, []).extend([(code, message, status)] * times)

    def strip(self, operation: str, *paths: str, times: int = 1) -> None:
        """The next ``times`` answers of ``operation`` lack these members, which botocore's model
        marks optional: dotted paths into the answer, ``[]`` for every item of a list, and a list
        itself emptied when the path ends in it (``"ProjectVersionDescriptions"``), e.g.
        ``strip("DescribeDataset", "DatasetDescription.StatusMessage")``."""
        if operation not in OPERATIONS:
            raise ValueError(f"{operation!r} is not an emulated operation: {OPERATIONS}")
        with self._lock:
            self._strips.setdefault(operation, []).extend([paths] * times)

    def fail_next_training(self, message: str) -> None:
        """The next project version created ends TRAINING_FAILED with this StatusMessage."""
        with self._lock:
            self._fail_training = message

    def end_next_start(self, status: str, message: str | None = None) -> None:
        """The next model started ends in ``status`` (a ProjectVersionStatus other than RUNNING,
        e.g. FAILED) with this StatusMessage, or none at all when ``message`` is None."""
        if status not in service_model.enum_of("rekognition", "ProjectVersionStatus") or status == "RUNNING":
            raise ValueError(f"{status!r} is not a ProjectVersionStatus a start can end in")
        with self._lock:
            self._start_ends = (status, message)

    def fail_next_dataset(self, message: str) -> None:
        """The next dataset created ends CREATE_FAILED (CLIENT_ERROR) with this StatusMessage."""
        with self._lock:
            self._fail_dataset = message

    def handle(self, operation: str, params: dict[str, Any], backend: Any, caller: Any = None) -> str:
        # The lock guards the emulator's state only. Checking the request against the model and
        # the part of an operation that reads nothing but the request (DetectCustomLabels
        # decoding a large image takes seconds) run outside it, so that moto's other request
        # threads (the API's GET /model describing the model meanwhile) do not wait for them.
        with self._lock:
            self.calls.append((operation, params))
        violations = service_model.validate_request("rekognition", operation, _decoded(params))
        violations += _tag_violations(params.get("Tags"))
        if violations:
            raise ServiceError("InvalidParameterException", "; ".join(violations))
        with self._lock:
            faults = self._faults.get(operation)
            if faults:
                raise ServiceError(*faults.pop(0))
            store = backend.__dict__.get("_custom_labels")
            if store is None:  # lives on the backend so that moto's reset discards it
                store = backend._custom_labels = Store()
            service = _Service(self, backend, store, caller)
            answer = _served(operation, lambda: getattr(service, camelcase_to_underscores(operation))(params))
        if isinstance(answer, _Unlocked):
            answer = _served(operation, answer.finish)
        answer = _drop_none(answer)
        with self._lock:
            strips = self._strips.get(operation)
            if strips:
                for path in strips.pop(0):
                    _remove(answer, path.split("."))
        return json.dumps(answer)


@dataclass(frozen=True)
class _Unlocked:
    """What is left of an operation once its state is read: work on the request alone, done
    after the controller's lock is released."""

    finish: Callable[[], dict[str, Any]]


def _served(operation: str, run: Callable[[], Any]) -> Any:
    try:
        return run()
    except ServiceError as exc:
        _modelled(operation, exc.error_type)  # the emulator itself must speak only modelled errors
        raise


def _decoded(params: dict[str, Any]) -> dict[str, Any]:
    """The request as the model describes it: blobs are bytes, not the wire's base64. An image
    over the Bytes limit is the operation's ImageTooLargeException (API reference), not a
    parameter error, so it is left to the operation."""
    image = params.get("Image")
    if not (isinstance(image, dict) and isinstance(image.get("Bytes"), str)):
        return params
    try:
        data = base64.b64decode(image["Bytes"], validate=True)
    except binascii.Error:
        return params  # the operation says it is not base64
    return {**params, "Image": {**image, "Bytes": data[:MAX_REQUEST_IMAGE_BYTES]}}


def _tag_violations(tags: Any) -> list[str]:
    # The model's TagKey pattern, ^(?!aws:)[\p{L}\p{Z}\p{N}_.:/=+\-@]*$, is Java regex that Python
    # cannot compile (service_model skips it); its reserved-prefix half is checked here.
    if not isinstance(tags, dict):
        return []
    return [f"Tags: the key {key!r} uses the reserved prefix 'aws:'" for key in tags if str(key).lower().startswith("aws:")]


def _remove(answer: Any, path: list[str]) -> None:
    if not path or not isinstance(answer, dict):
        return
    head, rest = path[0], path[1:]
    items = head.endswith("[]")
    key = head[:-2] if items else head
    if key not in answer:
        return
    if not rest:
        if isinstance(answer[key], list) and not items:
            answer[key] = []  # an empty list: the resource is not listed (yet)
        else:
            del answer[key]
        return
    for child in (answer[key] if items else [answer[key]]):
        _remove(child, rest)


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


def _page(items: list[Any], params: dict[str, Any]) -> tuple[list[Any], str | None]:
    try:
        start = int(params.get("NextToken") or 0)
    except ValueError:
        raise ServiceError("InvalidPaginationTokenException", "Invalid pagination token") from None
    end = start + int(params.get("MaxResults") or 100)
    return items[start:end], (str(end) if end < len(items) else None)


def _iou(a: tuple[float, ...] | None, b: tuple[float, ...] | None) -> float:
    if a is None or b is None:
        return 1.0 if a is b else 0.0  # image-level labels match image-level labels only
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    inter = max(w, 0.0) * max(h, 0.0)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def _ratios(tp: int, fp: int, fn: int) -> dict[str, float]:
    # 0/0 is defined as 0: a label never predicted has precision 0, never present recall 0.
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"F1Score": f1, "Precision": precision, "Recall": recall}


def predict(memory: dict[str, Entry], data_sha256: str) -> list[Label]:
    """The memoriser: the labels of a byte-identical training image, else nothing."""
    entry = memory.get(data_sha256)
    return list(entry.labels) if entry else []


def judge(truths: tuple[Label, ...], predicted: list[Label]) -> list[bool]:
    """Per prediction, whether it is a true positive: it meets an unclaimed ground truth of its
    label at IoU >= 0.5 (greedy, in prediction order, the best-overlapping truth first)."""
    unmatched = list(truths)
    found = []
    for lab in predicted:
        same = [t for t in unmatched if t.name == lab.name]
        best = max(same, key=lambda t: _iou(lab.box, t.box), default=None)
        hit = best is not None and _iou(lab.box, best.box) >= IOU_MATCH
        if hit:
            unmatched.remove(best)
        found.append(hit)
    return found


def evaluate(train: list[Entry], test: list[Entry]) -> dict[str, Any]:
    """Per label TP/FP/FN over the test set (``judge``), micro-averaged; ``images`` holds, per
    test entry, its predictions and whether each is a true positive (for the snapshot)."""
    memory = _memory(train)
    counts: dict[str, list[int]] = {label.name: [0, 0, 0, 0] for e in train for label in e.labels}
    images = []
    for entry in test:
        predicted = predict(memory, entry.sha256)
        hits = judge(entry.labels, predicted)
        images.append((entry, list(zip(predicted, hits))))
        for name in {lab.name for lab in entry.labels} | {lab.name for lab in predicted}:
            truths = sum(lab.name == name for lab in entry.labels)
            tp = sum(hit for lab, hit in zip(predicted, hits) if lab.name == name)
            c = counts.setdefault(name, [0, 0, 0, 0])
            c[0] += tp
            c[1] += sum(lab.name == name for lab in predicted) - tp
            c[2] += truths - tp
            c[3] += bool(truths)
    per_label = [
        {"Label": name, "Metrics": {**_ratios(*c[:3]), "Threshold": THRESHOLD}, "NumberOfTestingImages": c[3]}
        for name, c in counts.items()
    ]
    per_label.sort(key=lambda r: (-r["Metrics"]["F1Score"], r["Label"]))
    totals = [sum(c[i] for c in counts.values()) for i in range(3)]
    return {"aggregate": _ratios(*totals), "labels": per_label, "images": images}


# The evaluation manifest snapshot: Ground Truth output lines, ground truth under the training
# job's attribute, predictions under the evaluation job's, each prediction classified
# ("Interpreting the evaluation manifest snapshot",
# https://docs.aws.amazon.com/rekognition/latest/customlabels-dg/im-evaluation-manifest-snapshot-api.html;
# the attribute and job names are the ones of its example).
TRAINING_JOB, EVALUATION_JOB = "rekognition-custom-labels-training-job", "rekognition-custom-labels-evaluation-job"
TRAINING_ATTRIBUTE, EVALUATION_ATTRIBUTE = "rekognition-custom-labels-training-0", "rekognition-custom-labels-evaluation"


def _attribute(labels: list[Label], size: tuple[int, int], job: str, created: str,
               objects: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(value, metadata) of an object-detection attribute holding ``labels``' boxes."""
    names = sorted({lab.name for lab in labels})
    ids = {name: i for i, name in enumerate(names)}
    width, height = size
    annotations = [
        {"class_id": ids[lab.name], "width": round(lab.box[2] * width), "top": round(lab.box[1] * height),
         "height": round(lab.box[3] * height), "left": round(lab.box[0] * width)}
        for lab in labels
    ]
    value = {"annotations": annotations, "image_size": [{"width": width, "depth": 3, "height": height}]}
    meta = {"job-name": job, "class-map": {str(i): name for name, i in ids.items()},
            "human-annotated": "yes" if job == TRAINING_JOB else "no", "objects": objects,
            "creation-date": created, "type": _DETECTION}
    return value, meta


def _details(hit: bool) -> dict[str, Any]:
    # Every emulated prediction (confidence 0.99) clears the 0.5 threshold: TP or FP, never FN/TN.
    return {"version": 1, "ground-truth-labelling-jobs": [TRAINING_JOB], "is-true-positive": hit,
            "is-true-negative": False, "is-false-positive": not hit, "is-false-negative": False,
            "is-present-in-ground-truth": hit}


def snapshot_line(entry: Entry, judged: list[tuple[Label, bool]] | None, created: str) -> dict[str, Any]:
    """One line of a manifest snapshot: the entry's ground truth and, when ``judged`` is given
    (the test set), the model's predictions with their evaluation details."""
    line: dict[str, Any] = {"source-ref": entry.source_ref}
    boxes = [lab for lab in entry.labels if lab.box is not None]
    if boxes or not entry.labels:
        value, meta = _attribute(boxes, entry.size, TRAINING_JOB, created, [{"confidence": 1.0} for _ in boxes])
        line[TRAINING_ATTRIBUTE], line[TRAINING_ATTRIBUTE + "-metadata"] = value, meta
    for index, lab in enumerate(lab for lab in entry.labels if lab.box is None):
        attribute = f"rekognition-custom-labels-training-{index + bool(boxes)}"
        line[attribute] = 1
        line[attribute + "-metadata"] = {"confidence": 1.0, "job-name": TRAINING_JOB, "class-name": lab.name,
                                         "human-annotated": "yes", "creation-date": created, "type": _CLASSIFICATION}
    if judged is None:
        return line
    found = [(lab, hit) for lab, hit in judged if lab.box is not None]
    value, meta = _attribute([lab for lab, _ in found], entry.size, EVALUATION_JOB, created,
                             [{"confidence": CONFIDENCE / 100, DETAILS: _details(hit)} for _, hit in found])
    line[EVALUATION_ATTRIBUTE], line[EVALUATION_ATTRIBUTE + "-metadata"] = value, {"confidence": CONFIDENCE / 100, **meta}
    for index, (lab, hit) in enumerate((lab, hit) for lab, hit in judged if lab.box is None):
        attribute = f"{EVALUATION_ATTRIBUTE}-{index}"
        line[attribute] = 1
        line[attribute + "-metadata"] = {"confidence": CONFIDENCE / 100, "job-name": EVALUATION_JOB, "class-name": lab.name,
                                         "human-annotated": "no", "creation-date": created, "type": _CLASSIFICATION,
                                         DETAILS: _details(hit)}
    return line


DETAILS = "rekognition-custom-labels-evaluation-details"


def _assets(assets: list[dict[str, Any]] | None, **extra: Any) -> dict[str, Any] | None:
    return {"Assets": assets, **extra} if assets is not None else None


def _memory(entries: list[Entry]) -> dict[str, Entry]:
    memory: dict[str, Entry] = {}
    for entry in entries:
        memory.setdefault(entry.sha256, entry)  # a duplicated image: the first line wins
    return memory


class _Service:
    """One request's view of the emulator: the operations, against one backend's store."""

    def __init__(self, controller: Controller, backend: Any, store: Store, caller: Any = None) -> None:
        self.ctl, self.backend, self.store, self.caller = controller, backend, store, caller
        self.settings = controller._settings
        self.s3 = s3_backends[backend.account_id][backend.partition]

    # -- helpers ------------------------------------------------------------------------
    def _get(self, table: dict[str, Any], arn: Any, what: str) -> Any:
        if arn not in table:
            raise ServiceError("ResourceNotFoundException", f"The {what} {arn} was not found.")
        return table[arn]

    def _read(self, bucket: Any, key: Any, version: Any = None) -> bytes | None:
        """The object's bytes, or None when it does not exist; raises _Denied when this
        request's caller may not read it."""
        denial = authorization.s3_denial(self.caller, "s3:GetObject", str(bucket), str(key))
        if denial:
            raise _Denied(denial)
        try:
            obj = self.s3.get_object(str(bucket), str(key), version_id=version)
        except S3ClientError:
            return None
        return None if obj is None else obj.value

    def _entry(self, line: str) -> Entry:
        """One manifest line -> Entry; ValueError says why the line is an error entry."""
        doc = json.loads(line)
        if not isinstance(doc, dict):
            raise ValueError("ERROR_INVALID_JSON_LINE: not a JSON object")
        ref = doc.get("source-ref")
        if ref is None:
            raise ValueError("ERROR_MISSING_SOURCE_REF: the source-ref key is missing")
        if not isinstance(ref, str) or not ref.startswith("s3://") or "/" not in ref[5:]:
            raise ValueError(f"ERROR_INVALID_SOURCE_REF_FORMAT: source-ref {ref!r} is not an s3://bucket/key URI")
        data = self._read(*ref[5:].split("/", 1))
        if data is None:
            raise ValueError(f"ERROR_INVALID_IMAGE: image {ref} not found")
        try:
            info = probe_bytes(data)
            check_rules(info, len(data))
            decode(data)
        except ImageError as exc:
            raise ValueError(f"ERROR_INVALID_IMAGE: image {ref}: {exc.detail}") from None
        attributes = [key[: -len("-metadata")] for key in doc if key.endswith("-metadata")]
        if not attributes:
            raise ValueError("ERROR_NO_LABEL_ATTRIBUTES: no label attribute (*-metadata)")
        labels: list[Label] = []
        for attribute in attributes:
            meta, value = doc[attribute + "-metadata"], doc.get(attribute)
            kind = meta.get("type") if isinstance(meta, dict) else None
            if kind == _CLASSIFICATION and isinstance(meta.get("class-name"), str):
                labels.append(Label(meta["class-name"], None))
            elif kind == _DETECTION and isinstance(value, dict):
                labels.extend(self._boxes(attribute, value, meta, info.width, info.height))
            else:
                raise ValueError(f"ERROR_INVALID_LABEL_ATTRIBUTE_METADATA_FORMAT: {attribute}-metadata: type {kind!r} unsupported or incomplete")
        return Entry(ref, hashlib.sha256(data).hexdigest(), tuple(labels), (info.width, info.height))

    @staticmethod
    def _boxes(attribute: str, value: dict, meta: dict, width: int, height: int) -> list[Label]:
        size, annotations = value.get("image_size"), value.get("annotations")
        classes, objects = meta.get("class-map"), meta.get("objects")
        if not (isinstance(size, list) and len(size) == 1 and isinstance(size[0], dict)):
            raise ValueError(f"{attribute}: image_size must be a one-element list")
        if (size[0].get("width"), size[0].get("height")) != (width, height):
            raise ValueError(f"{attribute}: image_size {size[0]} does not match the image ({width}x{height})")
        if not isinstance(annotations, list) or not isinstance(objects, list) or len(objects) != len(annotations):
            raise ValueError(f"{attribute}: annotations and metadata objects must be lists of equal length")
        if not isinstance(classes, dict):
            raise ValueError(f"{attribute}-metadata: class-map missing")
        labels = []
        for box in annotations:
            try:
                name = classes[str(box["class_id"])]
                left, top, w, h = (float(box[k]) for k in ("left", "top", "width", "height"))
            except (KeyError, TypeError, ValueError):
                raise ValueError(f"{attribute}: annotation {box!r} lacks a class-map entry or a number") from None
            if w <= 0 or h <= 0 or left < 0 or top < 0 or left + w > width or top + h > height:
                raise ValueError(f"{attribute}: bounding box {box!r} is empty or outside the image")
            labels.append(Label(name, (left / width, top / height, w / width, h / height)))
        return labels

    def _manifest(self, s3obj: Any) -> Manifest:
        s3obj = s3obj if isinstance(s3obj, dict) else {}
        uri = f"s3://{s3obj.get('Bucket')}/{s3obj.get('Name')}"
        result = Manifest()
        try:
            raw = self._read(s3obj.get("Bucket"), s3obj.get("Name"), s3obj.get("Version"))
        except _Denied as denied:
            result.failure = f"ERROR_INVALID_PERMISSIONS_MANIFEST_S3_BUCKET: The S3 bucket permissions are incorrect. {denied}"
            return result
        try:
            lines = raw.decode("utf-8").splitlines() if raw is not None else None
        except UnicodeDecodeError:
            lines = None
        if lines is None:
            result.failure = f"ERROR_MANIFEST_INACCESSIBLE_OR_UNSUPPORTED_FORMAT: the manifest {uri} could not be read."
            return result
        buckets = set()
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            result.total += 1
            try:
                entry = self._entry(line)
            except _Denied as denied:
                result.failure = f"ERROR_INVALID_PERMISSIONS_IMAGES_S3_BUCKET: The permissions for the images S3 bucket are invalid. {denied}"
                return result
            except ValueError as exc:  # json.JSONDecodeError is a ValueError too
                result.errors += 1
                result.problems.append(f"line {number}: {exc}")
                continue
            result.entries.append(entry)
            buckets.add(entry.source_ref[5:].split("/", 1)[0])
        if len(buckets) > 1:
            result.failure = f"ERROR_IMAGES_IN_MULTIPLE_S3_BUCKETS: the manifest {uri} names images in {len(buckets)} buckets: {sorted(buckets)}."
        elif not result.entries:
            first = f" First problem: {result.problems[0]}." if result.problems else ""
            result.failure = f"ERROR_TOO_MANY_INVALID_ROWS_IN_MANIFEST: no valid line in {uri} ({result.total} lines).{first}"
        return result

    def _prefix(self, name: str) -> str:
        b = self.backend
        return f"arn:{b.partition}:rekognition:{b.region_name}:{b.account_id}:project/{name}"

    def _tick(self, resource: Dataset | Version | Project) -> None:
        # Called on Describe: the outcome is revealed once the in-progress ticks are used up.
        if resource.status not in ("CREATE_IN_PROGRESS", "DELETE_IN_PROGRESS", "TRAINING_IN_PROGRESS", "STARTING", "STOPPING", "DELETING"):
            return
        if resource.ticks > 0:
            resource.ticks -= 1
        elif resource.status in ("DELETE_IN_PROGRESS", "DELETING"):
            self._forget(resource)
        elif isinstance(resource, Dataset):
            resource.status = "CREATE_FAILED" if resource.result.failure else "CREATE_COMPLETE"
            resource.updated = time.time()
        elif resource.status == "TRAINING_IN_PROGRESS":
            self._finish_training(resource)
        elif resource.status == "STARTING":
            resource.status, resource.message = resource.start_ends or ("RUNNING", "The model is running.")
        elif resource.status == "STOPPING":
            resource.status, resource.message = "STOPPED", "The model is stopped."

    def _forget(self, resource: Dataset | Version | Project) -> None:
        """An asynchronous deletion is over: the resource is gone (and frees its place)."""
        if isinstance(resource, Dataset):
            self.store.datasets.pop(resource.arn, None)
            project = self.store.projects.get(resource.project_arn)
            if project is not None and project.datasets.get(resource.kind) == resource.arn:
                del project.datasets[resource.kind]
        elif isinstance(resource, Version):
            self.store.versions.pop(resource.arn, None)
        else:
            self.store.projects.pop(resource.arn, None)

    def _finish_training(self, version: Version) -> None:
        version.ended = time.time()
        if version.failure is None:
            report = evaluate(version.train, version.test)
            ended = datetime.now(timezone.utc).replace(tzinfo=None).isoformat()
            summary = {
                "Version": 1,
                "AggregatedEvaluationResults": report["aggregate"],
                "EvaluationDetails": {
                    "EvaluationEndTimestamp": ended,
                    "Labels": sorted({lab.name for e in version.train for lab in e.labels}),
                    "NumberOfTestingImages": len(version.test),
                    "NumberOfTrainingImages": len(version.train),
                    "ProjectVersionArn": version.arn,
                },
                "LabelEvaluationResults": report["labels"],
            }
            prefix = version.output.get("S3KeyPrefix") or ""
            prefix += "" if not prefix or prefix.endswith("/") else "/"
            # Where the service puts the snapshots under the output prefix is not documented
            # (only that they go to the OutputConfig location, im-access-summary-evaluation-manifest.html);
            # readers must take the keys from TrainingDataResult/TestingDataResult.Output.
            snapshots = f"{prefix}{version.project.name}/{version.name}/manifests/"
            outputs = {
                "summary": (f"{prefix}EvaluationSummary-{version.project.name}-{version.name}.json", json.dumps(summary, indent=2)),
                "testing": (snapshots + "testing/output.manifest",
                            "".join(json.dumps(snapshot_line(entry, judged, ended)) + "\n" for entry, judged in report["images"])),
                "training": (snapshots + "training/output.manifest",
                             "".join(json.dumps(snapshot_line(entry, None, ended)) + "\n" for entry in version.train)),
            }
            written = {}
            for what, (key, body) in outputs.items():
                written[what] = self._write_output(version, key, body.encode())
                if version.failure is not None:
                    break
            if version.failure is None:
                version.evaluation = {"F1Score": report["aggregate"]["F1Score"], "Summary": {"S3Object": written["summary"]}}
                version.outputs = {side: [{"GroundTruthManifest": {"S3Object": written[side]}}] for side in ("training", "testing")}
        if version.failure is not None:
            version.status, version.message = "TRAINING_FAILED", version.failure
        else:
            version.status, version.message = "TRAINING_COMPLETED", "The model is ready to run."

    def _write_output(self, version: Version, key: str, body: bytes) -> dict[str, str] | None:
        """Put one training output as the caller of CreateProjectVersion; its S3Object, or None
        with ``version.failure`` set when the write is denied or fails."""
        bucket = str(version.output.get("S3Bucket"))
        denial = authorization.s3_denial(version.caller, "s3:PutObject", bucket, key)
        if denial:
            version.failure = f"ERROR_CANNOT_WRITE_OUTPUT_S3_BUCKET: Unable to write to output S3 bucket. {denial}"
            return None
        try:
            self.s3.put_object(bucket, key, body)
        except S3ClientError as exc:
            version.failure = f"ERROR_CANNOT_WRITE_OUTPUT_S3_BUCKET: Unable to write to output S3 bucket s3://{bucket}/{key}: {exc}"
            return None
        return {"Bucket": bucket, "Name": key}

    # -- projects -----------------------------------------------------------------------
    def create_project(self, p: dict[str, Any]) -> dict[str, Any]:
        name, feature = p.get("ProjectName"), p.get("Feature") or "CUSTOM_LABELS"
        if feature != "CUSTOM_LABELS":
            raise ServiceError("InvalidParameterException", f"Feature {feature} is not emulated; only CUSTOM_LABELS is.")
        if any(project.name == name for project in self.store.projects.values()):
            raise ServiceError("ResourceInUseException", f"A project named {name} already exists.")
        now = time.time()
        project = Project(f"{self._prefix(name)}/{int(now * 1000)}", name, now, feature)
        self.store.projects[project.arn] = project
        return {"ProjectArn": project.arn}

    def describe_projects(self, p: dict[str, Any]) -> dict[str, Any]:
        names, features = p.get("ProjectNames"), p.get("Features")
        projects = [
            x for x in sorted(self.store.projects.values(), key=lambda x: -x.created)
            if (not names or x.name in names) and (not features or x.feature in features)
        ]
        for project in projects:  # deletions move on here (creation moves on DescribeDataset)
            self._tick(project)
            for arn in list(project.datasets.values()):
                if arn in self.store.datasets and self.store.datasets[arn].status == "DELETE_IN_PROGRESS":
                    self._tick(self.store.datasets[arn])
        projects = [x for x in projects if x.arn in self.store.projects]
        page, token = _page(projects, p)
        described = []
        for project in page:
            datasets = [self.store.datasets[arn] for arn in project.datasets.values()]
            described.append({
                "ProjectArn": project.arn, "CreationTimestamp": project.created, "Status": project.status,
                "Feature": project.feature,
                "Datasets": [{"CreationTimestamp": d.created, "DatasetType": d.kind, "DatasetArn": d.arn, **self._status(d)} for d in datasets],
            })  # fmt: skip
        return {"ProjectDescriptions": described, "NextToken": token}

    def delete_project(self, p: dict[str, Any]) -> dict[str, Any]:
        # The API reference requires every model to be deleted first; datasets go with the
        # project (the console deletes them too; whether the API refuses instead is unconfirmed).
        project = self._get(self.store.projects, p.get("ProjectArn"), "project")
        if any(v.project is project for v in self.store.versions.values()):
            raise ServiceError("ResourceInUseException", "Delete the project's models before the project.")
        for arn in project.datasets.values():
            self.store.datasets.pop(arn, None)
        project.datasets.clear()
        project.status, project.ticks = "DELETING", self.settings.delete_ticks
        return {"Status": "DELETING"}

    # -- datasets -----------------------------------------------------------------------
    def create_dataset(self, p: dict[str, Any]) -> dict[str, Any]:
        project = self._project(p)
        kind, source = p.get("DatasetType"), p.get("DatasetSource") or {}
        if kind in project.datasets:
            existing = self.store.datasets.get(project.datasets[kind])
            what = "is still being deleted" if existing is not None and existing.status == "DELETE_IN_PROGRESS" else "exists"
            raise ServiceError("ResourceAlreadyExistsException", f"The project's {kind} dataset {what}.")
        manifest = (source.get("GroundTruthManifest") or {}).get("S3Object")
        if manifest is not None:
            result = self._manifest(manifest)
        elif source.get("DatasetArn"):
            copied = self._get(self.store.datasets, source["DatasetArn"], "dataset")
            if copied.status != "CREATE_COMPLETE":
                raise ServiceError("InvalidParameterException", f"The dataset {copied.arn} to copy is {copied.status}.")
            result, manifest = Manifest(list(copied.result.entries), copied.result.total, copied.result.errors), copied.source
        else:
            result = Manifest()  # an empty dataset, to be filled by UpdateDatasetEntries (not emulated)
        if self.ctl._fail_dataset is not None:
            result.failure, self.ctl._fail_dataset = self.ctl._fail_dataset, None
        now = time.time()
        arn = f"{self._prefix(project.name)}/dataset/{kind.lower()}/{int(now * 1000)}"
        self.store.datasets[arn] = Dataset(arn, project.arn, kind, now, result, self.settings.dataset_ticks, updated=now, source=manifest)
        project.datasets[kind] = arn
        return {"DatasetArn": arn}

    def _project(self, p: dict[str, Any]) -> Project:
        project = self._get(self.store.projects, p.get("ProjectArn"), "project")
        if project.status == "DELETING":
            raise ServiceError("ResourceInUseException", f"The project {project.arn} is being deleted.")
        return project

    @staticmethod
    def _status(d: Dataset) -> dict[str, Any]:
        if d.status == "CREATE_IN_PROGRESS":
            return {"Status": d.status, "StatusMessage": "The dataset is being created."}
        if d.status == "DELETE_IN_PROGRESS":
            return {"Status": d.status, "StatusMessage": "The dataset is being deleted."}
        if d.status == "CREATE_FAILED":
            return {"Status": d.status, "StatusMessage": d.result.failure, "StatusMessageCode": "CLIENT_ERROR"}
        return {"Status": d.status, "StatusMessage": "The dataset was successfully created.", "StatusMessageCode": "SUCCESS"}

    def describe_dataset(self, p: dict[str, Any]) -> dict[str, Any]:
        dataset = self._get(self.store.datasets, p.get("DatasetArn"), "dataset")
        self._tick(dataset)
        dataset = self._get(self.store.datasets, p.get("DatasetArn"), "dataset")  # deleted by now?
        done = dataset.status == "CREATE_COMPLETE"
        entries = dataset.result.entries if done else []
        stats = {
            "LabeledEntries": sum(bool(e.labels) for e in entries),
            "TotalEntries": dataset.result.total if done else 0,
            "TotalLabels": len({lab.name for e in entries for lab in e.labels}),
            "ErrorEntries": dataset.result.errors if done else 0,
        }
        return {"DatasetDescription": {"CreationTimestamp": dataset.created, "LastUpdatedTimestamp": dataset.updated, **self._status(dataset), "DatasetStats": stats}}

    def delete_dataset(self, p: dict[str, Any]) -> dict[str, Any]:
        # Asynchronous: DELETE_IN_PROGRESS until the ticks run out, then gone. Versions keep
        # their own snapshot of the entries.
        dataset = self._get(self.store.datasets, p.get("DatasetArn"), "dataset")
        if dataset.status in ("CREATE_IN_PROGRESS", "DELETE_IN_PROGRESS"):
            raise ServiceError("ResourceInUseException", f"You can't delete a dataset that is {dataset.status}.")
        dataset.status, dataset.ticks, dataset.updated = "DELETE_IN_PROGRESS", self.settings.delete_ticks, time.time()
        return {}

    # -- model versions -----------------------------------------------------------------
    def create_project_version(self, p: dict[str, Any]) -> dict[str, Any]:
        project = self._project(p)
        name, output = p.get("VersionName"), p.get("OutputConfig") or {}
        if any(v.project is project and v.name == name for v in self.store.versions.values()):
            raise ServiceError("ResourceInUseException", f"The project already has a model version named {name}.")
        if not output.get("S3Bucket"):
            raise ServiceError("InvalidParameterException", "OutputConfig.S3Bucket is required.")
        train, test, inputs, failure = self._training_data(project, p)
        if failure is None and not any(e.labels for e in train):
            failure = "The training dataset has no labeled entries."
        elif failure is None and not test:
            failure = "The test dataset has no valid entries."
        if self.ctl._fail_training is not None:
            failure, self.ctl._fail_training = self.ctl._fail_training, None
        now = time.time()
        arn = f"{self._prefix(project.name)}/version/{name}/{int(now * 1000)}"
        version = Version(arn, name, project, now, dict(output), train, test, inputs, failure, self.settings.training_ticks,
                          caller=self.caller, memory=_memory(train))
        self.store.versions[arn] = version
        return {"ProjectVersionArn": arn}

    def _training_data(self, project: Project, p: dict[str, Any]) -> tuple[list[Entry], list[Entry], tuple, str | None]:
        """Snapshot the entries of the project's TRAIN and TEST datasets."""
        if p.get("TrainingData") or p.get("TestingData"):
            raise ServiceError("InvalidParameterException", "TrainingData/TestingData are not emulated; create TRAIN and TEST datasets.")
        sides = []
        for kind in ("TRAIN", "TEST"):
            dataset = self.store.datasets.get(project.datasets.get(kind, ""))
            if dataset is None:
                raise ServiceError("InvalidParameterException", f"The project has no {kind} dataset; create one first.")
            if dataset.status in ("CREATE_IN_PROGRESS", "DELETE_IN_PROGRESS"):
                raise ServiceError("ResourceInUseException", f"The {kind} dataset {dataset.arn} is {dataset.status}.")
            if dataset.status != "CREATE_COMPLETE":
                raise ServiceError("InvalidParameterException", f"The {kind} dataset {dataset.arn} is {dataset.status}.")
            sides.append(dataset)
        inputs = tuple([{"GroundTruthManifest": {"S3Object": d.source}}] if d.source else [] for d in sides)
        return list(sides[0].result.entries), list(sides[1].result.entries), inputs, None

    def describe_project_versions(self, p: dict[str, Any]) -> dict[str, Any]:
        project = self._get(self.store.projects, p.get("ProjectArn"), "project")
        names = p.get("VersionNames")
        versions = [
            v for v in sorted(self.store.versions.values(), key=lambda v: -v.created)
            if v.project is project and (not names or v.name in names)
        ]
        for v in versions:
            self._tick(v)
        versions = [v for v in versions if v.arn in self.store.versions]
        page, token = _page(versions, p)
        described = []
        for v in page:
            completed = v.status not in ("TRAINING_IN_PROGRESS", "TRAINING_FAILED")
            described.append({
                "ProjectVersionArn": v.arn, "CreationTimestamp": v.created, "Status": v.status,
                "StatusMessage": v.message, "Feature": v.project.feature, "OutputConfig": v.output,
                "MinInferenceUnits": v.units[0] if v.units else None,
                "MaxInferenceUnits": v.units[1] if v.units else None,
                "BillableTrainingTimeInSeconds": 0 if completed else None,  # the emulator bills nothing
                "TrainingEndTimestamp": v.ended,
                "TrainingDataResult": {"Input": {"Assets": v.inputs[0]}, "Output": _assets(v.outputs.get("training"))},
                "TestingDataResult": {"Input": {"Assets": v.inputs[1], "AutoCreate": False},
                                      "Output": _assets(v.outputs.get("testing"), AutoCreate=False)},
                "EvaluationResult": v.evaluation,
            })  # fmt: skip
        return {"ProjectVersionDescriptions": described, "NextToken": token}

    _BUSY = ("TRAINING_IN_PROGRESS", "STARTING", "RUNNING", "STOPPING", "DELETING")

    def _model(self, p: dict[str, Any], allowed: tuple[str, ...], busy: tuple[str, ...] = _BUSY) -> Version:
        # A model in transition (or running) is "in use"; any other wrong status is a bad parameter.
        version = self._get(self.store.versions, p.get("ProjectVersionArn"), "model")
        if version.status not in allowed:
            code = "ResourceInUseException" if version.status in busy else "InvalidParameterException"
            raise ServiceError(code, f"The model is {version.status}; this needs one of {', '.join(allowed)}.")
        return version

    def delete_project_version(self, p: dict[str, Any]) -> dict[str, Any]:
        version = self._model(p, ("TRAINING_COMPLETED", "TRAINING_FAILED", "STOPPED", "FAILED"))
        version.status, version.message, version.ticks = "DELETING", "The model is being deleted.", self.settings.delete_ticks
        return {"Status": "DELETING"}

    def start_project_version(self, p: dict[str, Any]) -> dict[str, Any]:
        version = self._model(p, ("TRAINING_COMPLETED", "STOPPED"))
        low = int(p.get("MinInferenceUnits") or 1)
        version.units = (low, int(p.get("MaxInferenceUnits") or low))
        version.status, version.message, version.ticks = "STARTING", "The model is starting.", self.settings.start_ticks
        version.start_ends, self.ctl._start_ends = self.ctl._start_ends, None
        return {"Status": "STARTING"}

    def stop_project_version(self, p: dict[str, Any]) -> dict[str, Any]:
        # "Stops a running model" (API reference); a STARTING one is refused here (undocumented).
        version = self._model(p, ("RUNNING",), busy=("TRAINING_IN_PROGRESS", "STARTING", "STOPPING", "DELETING"))
        version.status, version.message, version.ticks = "STOPPING", "The model is stopping.", self.settings.stop_ticks
        return {"Status": "STOPPING"}

    # -- inference ----------------------------------------------------------------------
    def detect_custom_labels(self, p: dict[str, Any]) -> _Unlocked:
        version = self._get(self.store.versions, p.get("ProjectVersionArn"), "model")
        if version.status != "RUNNING":
            raise ServiceError("ResourceNotReadyException", f"The model is {version.status}; start it and wait for RUNNING.")
        image = p.get("Image") or {}
        if ("Bytes" in image) == ("S3Object" in image):
            raise ServiceError("InvalidParameterException", "Give exactly one of Image.Bytes and Image.S3Object.")
        memory = version.memory  # set once, when training finished; never changed after
        return _Unlocked(lambda: self._detect_in_image(p, image, memory))

    def _detect_in_image(self, p: dict[str, Any], image: dict[str, Any], memory: dict[str, Entry]) -> dict[str, Any]:
        """DetectCustomLabels on the image itself: read, checked, decoded and recognised."""
        if "Bytes" in image:
            try:
                data = base64.b64decode(image["Bytes"], validate=True)
            except (binascii.Error, TypeError):
                raise ServiceError("InvalidParameterException", "Image.Bytes is not base64.") from None
            limit = MAX_REQUEST_IMAGE_BYTES
        else:
            obj = image["S3Object"] or {}
            try:
                data = self._read(obj.get("Bucket"), obj.get("Name"), obj.get("Version"))
            except _Denied:
                data = None  # the service says the same whether the object is missing or unreadable
            if data is None:
                raise ServiceError("InvalidS3ObjectException", "Unable to get object metadata from S3. Check object key, region and/or access permissions.")
            limit = MAX_FILE_BYTES
        if len(data) > limit:
            raise ServiceError("ImageTooLargeException", f"The image is {len(data)} bytes; the limit is {limit}.")
        try:
            probe_bytes(data)
            decode(data)
        except ImageError:
            raise ServiceError("InvalidImageFormatException", "Request has invalid image format") from None
        minimum = float(p.get("MinConfidence") or 0.0)
        found = [lab for lab in predict(memory, hashlib.sha256(data).hexdigest()) if CONFIDENCE >= minimum]
        found.sort(key=lambda lab: (-CONFIDENCE, lab.name))  # stable: same label keeps manifest order
        if p.get("MaxResults") is not None:
            found = found[: int(p["MaxResults"])]
        labels = []
        for lab in found:
            label: dict[str, Any] = {"Name": lab.name, "Confidence": CONFIDENCE}
            if lab.box is not None:
                left, top, width, height = lab.box
                label["Geometry"] = {"BoundingBox": {"Width": width, "Height": height, "Left": left, "Top": top}}
            labels.append(label)
        return {"CustomLabels": labels}


class _Denied(Exception):
    """The caller may not read an object the service would read on its behalf."""


def decode(data: bytes) -> None:
    """Decode the whole image, as the service does: a truncated or corrupt JPEG/PNG whose header
    is fine fails here. Raises ImageError."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as picture:
            picture.load()
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:  # Pillow's decoders raise these
        raise ImageError("image_unreadable", f"the image does not decode: {exc}") from None


_CONTROLLER = Controller()


def _handler(operation: str) -> Any:
    def handler(self: RekognitionResponse) -> str:
        params = json.loads(self.body) if self.body else {}
        caller = authorization.caller_of(self.headers, self.current_account, self.region)
        return _CONTROLLER.handle(operation, params, self.rekognition_backend, caller)

    handler.__name__ = handler.__qualname__ = camelcase_to_underscores(operation)
    return handler


_HANDLERS = {operation: _handler(operation) for operation in OPERATIONS}


def install() -> Controller:
    """Add the Custom Labels operations to moto's Rekognition responses; returns the controller.

    moto dispatches an action to the ``RekognitionResponse`` method of the same snake_case
    name, both under ``mock_aws`` and in its server, so setting the methods on the class covers
    both. Idempotent (the same functions are set again); it replaces moto's canned
    ``detect_custom_labels``. The controller is process-wide: call ``reset()`` between tests.

    It also tells moto's Step Functions interpreter that aws-sdk errors of this service are
    named ``Rekognition.<Exception>``, as in AWS (moto would say ``rekognition.``), so that
    Retry and Catch clauses written for AWS match.
    """
    for operation, handler in _HANDLERS.items():
        setattr(RekognitionResponse, handler.__name__, handler)
    try:
        from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import state_task_service_aws_sdk as sdk

        sdk._SERVICE_ERROR_NAMES.setdefault("rekognition", "Rekognition")
    except (ImportError, AttributeError):  # a moto without that interpreter: nothing to align
        pass
    return _CONTROLLER
