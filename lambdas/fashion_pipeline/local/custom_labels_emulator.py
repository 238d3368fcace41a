"""An emulator of the Amazon Rekognition Custom Labels API, installed into moto.

This is an emulator, not a model and not AWS. moto 5 has a Rekognition backend but no Custom
Labels operations; ``install()`` adds them to moto's ``RekognitionResponse`` so that boto3
clients under ``mock_aws()``, clients of an in-process ``ThreadedMotoServer`` and moto's Step
Functions interpreter (whose aws-sdk tasks are boto3 calls) can run the whole lifecycle.

What it does:

* keeps projects, datasets and model versions per account and region on moto's Rekognition
  backend, so moto's reset (``mock_aws`` start/stop) clears them;
* reads a dataset's manifest and every image it names from moto S3 when the dataset is
  created; a line is an error entry unless it is JSON with an ``s3://`` ``source-ref`` whose
  image is a readable JPEG/PNG within Custom Labels' limits, and one or more ``*-metadata``
  attributes of type ``groundtruth/object-detection`` (``image_size`` one element matching
  the image, one ``objects`` item per box, every ``class_id`` a key of ``class-map``, boxes
  inside the image) or ``groundtruth/image-classification`` (a ``class-name``). A bad box
  makes the whole line an error entry (the service may drop just the box);
* moves asynchronous statuses (dataset creation, training, start, stop) on Describe calls,
  never on wall-clock time: with N ticks, N Describe calls still see the in-progress status
  and the next one sees the outcome;
* "trains" a memoriser: the model records the sha256 of every training image and its labels.
  DetectCustomLabels returns exactly those labels for a byte-identical image (boxes as ratios
  of the image size, Confidence 99.0) and nothing for any other image;
* evaluates that memoriser honestly on the test dataset: predictions meet ground truth of
  the same label greedily at IoU >= 0.5; per label TP/FP/FN give precision, recall and F1
  (0/0 counts as 0), the aggregate is micro-averaged and every label's Threshold is 0.5. So a
  model tested on images it never saw scores F1 0. The training results summary file
  (``EvaluationSummary-{project}-{version}.json``) goes to the output location in S3.

What it does not do: learn or generalise; report AveragePrecision, AverageRecall or a
confusion matrix; write manifest snapshots or validation manifests; enforce service quotas or
the "too many invalid rows" ratio; emulate UpdateDatasetEntries, ListDatasetEntries, tagging,
copying models, project policies, training from ``TrainingData``/``TestingData`` manifests (the
older API; datasets are required) or content moderation.
Status messages are plausible English, not the service's exact text.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from moto.core.exceptions import JsonRESTError
from moto.core.utils import camelcase_to_underscores
from moto.rekognition.responses import RekognitionResponse
from moto.s3.exceptions import S3ClientError
from moto.s3.models import s3_backends

from ..images import MAX_FILE_BYTES, ImageError, check_rules, probe_bytes

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
_HTTP_STATUS = {"InternalServerError": 500, "ServiceUnavailableException": 503}
_DETECTION, _CLASSIFICATION = "groundtruth/object-detection", "groundtruth/image-classification"


class ServiceError(JsonRESTError):
    """An API error as boto3 sees it: ClientError with this code and HTTP status."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(code, message)
        self.code = status


@dataclass
class Settings:
    dataset_ticks: int = 1
    training_ticks: int = 2
    start_ticks: int = 1
    stop_ticks: int = 1


@dataclass(frozen=True)
class Label:
    name: str
    box: tuple[float, float, float, float] | None  # left, top, width, height as ratios; None: image-level


@dataclass(frozen=True)
class Entry:
    source_ref: str
    sha256: str
    labels: tuple[Label, ...]


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
    status: str = "TRAINING_IN_PROGRESS"
    message: str = "The model is being trained."
    ended: float | None = None
    evaluation: dict[str, Any] | None = None
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
            self._faults: dict[str, list[tuple[str, str, int]]] = {}
            self._fail_training: str | None = None
            self._fail_dataset: str | None = None
            self.calls: list[tuple[str, dict[str, Any]]] = []

    def settings(self, **changes: int) -> Settings:
        """Change tick counts (``dataset_ticks``, ``training_ticks``, ``start_ticks``,
        ``stop_ticks``); returns the settings now in force. Affects resources created later."""
        with self._lock:
            for name, value in changes.items():
                if name not in Settings.__dataclass_fields__ or not isinstance(value, int) or value < 0:
                    raise ValueError(f"unknown setting or bad value: {name}={value!r}")
                setattr(self._settings, name, value)
            return Settings(**asdict(self._settings))

    def inject_error(self, operation: str, code: str, message: str = "Error injected by the Custom Labels emulator", times: int = 1, status: int | None = None) -> None:
        """The next ``times`` calls of ``operation`` fail with ``code`` (HTTP 400, or 500 for
        InternalServerError and 503 for ServiceUnavailableException unless ``status`` is given)."""
        if operation not in OPERATIONS:
            raise ValueError(f"{operation!r} is not an emulated operation: {OPERATIONS}")
        with self._lock:
            fault = (code, message, status or _HTTP_STATUS.get(code, 400))
            self._faults.setdefault(operation, []).extend([fault] * times)

    def fail_next_training(self, message: str) -> None:
        """The next project version created ends TRAINING_FAILED with this StatusMessage."""
        with self._lock:
            self._fail_training = message

    def fail_next_dataset(self, message: str) -> None:
        """The next dataset created ends CREATE_FAILED (CLIENT_ERROR) with this StatusMessage."""
        with self._lock:
            self._fail_dataset = message

    def handle(self, operation: str, params: dict[str, Any], backend: Any) -> str:
        with self._lock:
            self.calls.append((operation, params))
            faults = self._faults.get(operation)
            if faults:
                raise ServiceError(*faults.pop(0))
            store = backend.__dict__.get("_custom_labels")
            if store is None:  # lives on the backend so that moto's reset discards it
                store = backend._custom_labels = Store()
            service = _Service(self, backend, store)
            return json.dumps(_drop_none(getattr(service, camelcase_to_underscores(operation))(params)))


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


def evaluate(train: list[Entry], test: list[Entry]) -> dict[str, Any]:
    """Per label TP/FP/FN over the test set (greedy match by label, IoU >= 0.5), micro-averaged."""
    memory = _memory(train)
    counts: dict[str, list[int]] = {label.name: [0, 0, 0, 0] for e in train for label in e.labels}
    for entry in test:
        predicted = predict(memory, entry.sha256)
        for name in {lab.name for lab in entry.labels} | {lab.name for lab in predicted}:
            truths = [lab.box for lab in entry.labels if lab.name == name]
            unmatched = list(truths)
            tp = 0
            for box in (lab.box for lab in predicted if lab.name == name):
                best = max(unmatched, key=lambda t: _iou(box, t), default=None)
                if unmatched and _iou(box, best) >= IOU_MATCH:
                    unmatched.remove(best)
                    tp += 1
            c = counts.setdefault(name, [0, 0, 0, 0])
            c[0] += tp
            c[1] += sum(lab.name == name for lab in predicted) - tp
            c[2] += len(truths) - tp
            c[3] += bool(truths)
    per_label = [
        {"Label": name, "Metrics": {**_ratios(*c[:3]), "Threshold": THRESHOLD}, "NumberOfTestingImages": c[3]}
        for name, c in counts.items()
    ]
    per_label.sort(key=lambda r: (-r["Metrics"]["F1Score"], r["Label"]))
    totals = [sum(c[i] for c in counts.values()) for i in range(3)]
    return {"aggregate": _ratios(*totals), "labels": per_label}


def _memory(entries: list[Entry]) -> dict[str, Entry]:
    memory: dict[str, Entry] = {}
    for entry in entries:
        memory.setdefault(entry.sha256, entry)  # a duplicated image: the first line wins
    return memory


class _Service:
    """One request's view of the emulator: the operations, against one backend's store."""

    def __init__(self, controller: Controller, backend: Any, store: Store) -> None:
        self.ctl, self.backend, self.store = controller, backend, store
        self.settings = controller._settings
        self.s3 = s3_backends[backend.account_id][backend.partition]

    # -- helpers ------------------------------------------------------------------------
    def _get(self, table: dict[str, Any], arn: Any, what: str) -> Any:
        if arn not in table:
            raise ServiceError("ResourceNotFoundException", f"The {what} {arn} was not found.")
        return table[arn]

    def _read(self, bucket: Any, key: Any, version: Any = None) -> bytes | None:
        try:
            obj = self.s3.get_object(str(bucket), str(key), version_id=version)
        except S3ClientError:
            return None
        return None if obj is None else obj.value

    def _entry(self, line: str) -> Entry:
        """One manifest line -> Entry; ValueError says why the line is an error entry."""
        doc = json.loads(line)
        if not isinstance(doc, dict):
            raise ValueError("not a JSON object")
        ref = doc.get("source-ref")
        if not isinstance(ref, str) or not ref.startswith("s3://") or "/" not in ref[5:]:
            raise ValueError(f"source-ref {ref!r} is not an s3://bucket/key URI")
        data = self._read(*ref[5:].split("/", 1))
        if data is None:
            raise ValueError(f"image {ref} not found")
        try:
            info = probe_bytes(data)
            check_rules(info, len(data))
        except ImageError as exc:
            raise ValueError(f"image {ref}: {exc.detail}") from None
        attributes = [key[: -len("-metadata")] for key in doc if key.endswith("-metadata")]
        if not attributes:
            raise ValueError("no label attribute (*-metadata)")
        labels: list[Label] = []
        for attribute in attributes:
            meta, value = doc[attribute + "-metadata"], doc.get(attribute)
            kind = meta.get("type") if isinstance(meta, dict) else None
            if kind == _CLASSIFICATION and isinstance(meta.get("class-name"), str):
                labels.append(Label(meta["class-name"], None))
            elif kind == _DETECTION and isinstance(value, dict):
                labels.extend(self._boxes(attribute, value, meta, info.width, info.height))
            else:
                raise ValueError(f"{attribute}-metadata: type {kind!r} unsupported or incomplete")
        return Entry(ref, hashlib.sha256(data).hexdigest(), tuple(labels))

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
        raw = self._read(s3obj.get("Bucket"), s3obj.get("Name"), s3obj.get("Version"))
        result = Manifest()
        try:
            lines = raw.decode("utf-8").splitlines() if raw is not None else None
        except UnicodeDecodeError:
            lines = None
        if lines is None:
            result.failure = f"ERROR_MANIFEST_INACCESSIBLE_OR_UNSUPPORTED_FORMAT: the manifest {uri} could not be read."
            return result
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            result.total += 1
            try:
                result.entries.append(self._entry(line))
            except ValueError as exc:  # json.JSONDecodeError is a ValueError too
                result.errors += 1
                result.problems.append(f"line {number}: {exc}")
        if not result.entries:
            first = f" First problem: {result.problems[0]}." if result.problems else ""
            result.failure = f"ERROR_TOO_MANY_INVALID_ROWS_IN_MANIFEST: no valid line in {uri} ({result.total} lines).{first}"
        return result

    def _prefix(self, name: str) -> str:
        b = self.backend
        return f"arn:{b.partition}:rekognition:{b.region_name}:{b.account_id}:project/{name}"

    def _tick(self, resource: Dataset | Version) -> None:
        # Called on Describe: the outcome is revealed once the in-progress ticks are used up.
        if resource.status not in ("CREATE_IN_PROGRESS", "TRAINING_IN_PROGRESS", "STARTING", "STOPPING"):
            return
        if resource.ticks > 0:
            resource.ticks -= 1
        elif isinstance(resource, Dataset):
            resource.status = "CREATE_FAILED" if resource.result.failure else "CREATE_COMPLETE"
            resource.updated = time.time()
        elif resource.status == "TRAINING_IN_PROGRESS":
            self._finish_training(resource)
        elif resource.status == "STARTING":
            resource.status, resource.message = "RUNNING", "The model is running."
        elif resource.status == "STOPPING":
            resource.status, resource.message = "STOPPED", "The model is stopped."

    def _finish_training(self, version: Version) -> None:
        version.ended = time.time()
        if version.failure is None:
            report = evaluate(version.train, version.test)
            summary = {
                "Version": 1,
                "AggregatedEvaluationResults": report["aggregate"],
                "EvaluationDetails": {
                    "EvaluationEndTimestamp": datetime.now(timezone.utc).replace(tzinfo=None).isoformat(),
                    "Labels": sorted({lab.name for e in version.train for lab in e.labels}),
                    "NumberOfTestingImages": len(version.test),
                    "NumberOfTrainingImages": len(version.train),
                    "ProjectVersionArn": version.arn,
                },
                "LabelEvaluationResults": report["labels"],
            }
            bucket, prefix = version.output.get("S3Bucket"), version.output.get("S3KeyPrefix") or ""
            key = (prefix if not prefix or prefix.endswith("/") else prefix + "/")
            key += f"EvaluationSummary-{version.project.name}-{version.name}.json"
            try:
                self.s3.put_object(str(bucket), key, json.dumps(summary, indent=2).encode())
                version.evaluation = {"F1Score": report["aggregate"]["F1Score"], "Summary": {"S3Object": {"Bucket": bucket, "Name": key}}}
            except S3ClientError as exc:
                version.failure = f"The output location s3://{bucket}/{key} could not be written: {exc}"
        if version.failure is not None:
            version.status, version.message = "TRAINING_FAILED", version.failure
        else:
            version.status, version.message = "TRAINING_COMPLETED", "The model is ready to run."

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
        page, token = _page(projects, p)
        described = []
        for project in page:
            datasets = [self.store.datasets[arn] for arn in project.datasets.values()]
            described.append({
                "ProjectArn": project.arn, "CreationTimestamp": project.created, "Status": "CREATED",
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
        del self.store.projects[project.arn]
        return {"Status": "DELETING"}

    # -- datasets -----------------------------------------------------------------------
    def create_dataset(self, p: dict[str, Any]) -> dict[str, Any]:
        project = self._get(self.store.projects, p.get("ProjectArn"), "project")
        kind, source = p.get("DatasetType"), p.get("DatasetSource") or {}
        if kind not in ("TRAIN", "TEST"):
            raise ServiceError("InvalidParameterException", f"DatasetType must be TRAIN or TEST, not {kind!r}.")
        if kind in project.datasets:
            raise ServiceError("ResourceAlreadyExistsException", f"The project already has a {kind} dataset.")
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

    @staticmethod
    def _status(d: Dataset) -> dict[str, Any]:
        if d.status == "CREATE_IN_PROGRESS":
            return {"Status": d.status, "StatusMessage": "The dataset is being created."}
        if d.status == "CREATE_FAILED":
            return {"Status": d.status, "StatusMessage": d.result.failure, "StatusMessageCode": "CLIENT_ERROR"}
        return {"Status": d.status, "StatusMessage": "The dataset was successfully created.", "StatusMessageCode": "SUCCESS"}

    def describe_dataset(self, p: dict[str, Any]) -> dict[str, Any]:
        dataset = self._get(self.store.datasets, p.get("DatasetArn"), "dataset")
        self._tick(dataset)
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
        dataset = self._get(self.store.datasets, p.get("DatasetArn"), "dataset")
        if dataset.status == "CREATE_IN_PROGRESS":
            raise ServiceError("ResourceInUseException", "You can't delete a dataset while it is being created.")
        del self.store.datasets[dataset.arn]  # versions keep their own snapshot of the entries
        project = self.store.projects.get(dataset.project_arn)
        if project is not None:
            project.datasets.pop(dataset.kind, None)
        return {}

    # -- model versions -----------------------------------------------------------------
    def create_project_version(self, p: dict[str, Any]) -> dict[str, Any]:
        project = self._get(self.store.projects, p.get("ProjectArn"), "project")
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
        version = Version(arn, name, project, now, dict(output), train, test, inputs, failure, self.settings.training_ticks, memory=_memory(train))
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
            if dataset.status == "CREATE_IN_PROGRESS":
                raise ServiceError("ResourceInUseException", f"The {kind} dataset {dataset.arn} is still being created.")
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
        page, token = _page(versions, p)
        described = []
        for v in page:
            self._tick(v)
            completed = v.status not in ("TRAINING_IN_PROGRESS", "TRAINING_FAILED")
            described.append({
                "ProjectVersionArn": v.arn, "CreationTimestamp": v.created, "Status": v.status,
                "StatusMessage": v.message, "Feature": v.project.feature, "OutputConfig": v.output,
                "MinInferenceUnits": v.units[0] if v.units else None,
                "MaxInferenceUnits": v.units[1] if v.units else None,
                "BillableTrainingTimeInSeconds": 0 if completed else None,  # the emulator bills nothing
                "TrainingEndTimestamp": v.ended,
                "TrainingDataResult": {"Input": {"Assets": v.inputs[0]}},
                "TestingDataResult": {"Input": {"Assets": v.inputs[1], "AutoCreate": False}},
                "EvaluationResult": v.evaluation,
            })  # fmt: skip
        return {"ProjectVersionDescriptions": described, "NextToken": token}

    _BUSY = ("TRAINING_IN_PROGRESS", "STARTING", "RUNNING", "STOPPING")

    def _model(self, p: dict[str, Any], allowed: tuple[str, ...], busy: tuple[str, ...] = _BUSY) -> Version:
        # A model in transition (or running) is "in use"; any other wrong status is a bad parameter.
        version = self._get(self.store.versions, p.get("ProjectVersionArn"), "model")
        if version.status not in allowed:
            code = "ResourceInUseException" if version.status in busy else "InvalidParameterException"
            raise ServiceError(code, f"The model is {version.status}; this needs one of {', '.join(allowed)}.")
        return version

    def delete_project_version(self, p: dict[str, Any]) -> dict[str, Any]:
        version = self._model(p, ("TRAINING_COMPLETED", "TRAINING_FAILED", "STOPPED", "FAILED"))
        del self.store.versions[version.arn]
        return {"Status": "DELETING"}

    def start_project_version(self, p: dict[str, Any]) -> dict[str, Any]:
        version = self._model(p, ("TRAINING_COMPLETED", "STOPPED"))
        low = int(p.get("MinInferenceUnits") or 1)
        version.units = (low, int(p.get("MaxInferenceUnits") or low))
        version.status, version.message, version.ticks = "STARTING", "The model is starting.", self.settings.start_ticks
        return {"Status": "STARTING"}

    def stop_project_version(self, p: dict[str, Any]) -> dict[str, Any]:
        version = self._model(p, ("RUNNING", "STARTING"), busy=("TRAINING_IN_PROGRESS", "STOPPING"))
        version.status, version.message, version.ticks = "STOPPING", "The model is stopping.", self.settings.stop_ticks
        return {"Status": "STOPPING"}

    # -- inference ----------------------------------------------------------------------
    def detect_custom_labels(self, p: dict[str, Any]) -> dict[str, Any]:
        version = self._get(self.store.versions, p.get("ProjectVersionArn"), "model")
        if version.status != "RUNNING":
            raise ServiceError("ResourceNotReadyException", f"The model is {version.status}; start it and wait for RUNNING.")
        image = p.get("Image") or {}
        if ("Bytes" in image) == ("S3Object" in image):
            raise ServiceError("InvalidParameterException", "Give exactly one of Image.Bytes and Image.S3Object.")
        if "Bytes" in image:
            try:
                data = base64.b64decode(image["Bytes"], validate=True)
            except (binascii.Error, TypeError):
                raise ServiceError("InvalidParameterException", "Image.Bytes is not base64.") from None
            limit = MAX_REQUEST_IMAGE_BYTES
        else:
            obj = image["S3Object"] or {}
            data = self._read(obj.get("Bucket"), obj.get("Name"), obj.get("Version"))
            if data is None:
                raise ServiceError("InvalidS3ObjectException", "Unable to get object metadata from S3. Check object key, region and/or access permissions.")
            limit = MAX_FILE_BYTES
        if len(data) > limit:
            raise ServiceError("ImageTooLargeException", f"The image is {len(data)} bytes; the limit is {limit}.")
        try:
            probe_bytes(data)
        except ImageError:
            raise ServiceError("InvalidImageFormatException", "Request has invalid image format") from None
        minimum = float(p.get("MinConfidence") or 0.0)
        found = [lab for lab in predict(version.memory, hashlib.sha256(data).hexdigest()) if CONFIDENCE >= minimum]
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


_CONTROLLER = Controller()


def _handler(operation: str) -> Any:
    def handler(self: RekognitionResponse) -> str:
        params = json.loads(self.body) if self.body else {}
        return _CONTROLLER.handle(operation, params, self.rekognition_backend)

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
