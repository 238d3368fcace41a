"""What a trained Custom Labels model scored, read from the files the service writes.

After training, DescribeProjectVersions names two files (botocore's rekognition model:
``ProjectVersionDescription.EvaluationResult.Summary.S3Object`` and
``TestingDataResult.Output.Assets[].GroundTruthManifest.S3Object``; "Accessing the summary file
and evaluation manifest snapshot (SDK)",
https://docs.aws.amazon.com/rekognition/latest/customlabels-dg/im-access-summary-evaluation-manifest.html):

* the training results summary, ``EvaluationSummary-{project}-{version}.json``: overall and
  per-label Precision, Recall, F1Score and, per label, the assumed Threshold (0-1)
  ("Reference: Training results summary file",
  https://docs.aws.amazon.com/rekognition/latest/customlabels-dg/im-summary-file.html, and its
  example in "Accessing the model summary file",
  https://docs.aws.amazon.com/rekognition/latest/customlabels-dg/im-summary-file-api.html). The
  reference nests the aggregate under ``AggregatedEvaluationResults.Metrics`` while the example
  file has the numbers directly under ``AggregatedEvaluationResults``; both are read;
* the evaluation manifest snapshot of the test set: SageMaker Ground Truth output lines, the
  ground truth under the training attribute(s) and the model's predictions under an attribute
  whose metadata ``job-name`` is ``rekognition-custom-labels-evaluation-job``, each predicted
  object (or, for classification, the metadata itself) carrying a confidence (0-1) and
  ``rekognition-custom-labels-evaluation-details`` (is-true-positive, is-false-positive,
  is-false-negative, is-true-negative: the prediction's confidence against the label's
  threshold; is-present-in-ground-truth) ("Interpreting the evaluation manifest snapshot",
  https://docs.aws.amazon.com/rekognition/latest/customlabels-dg/im-evaluation-manifest-snapshot-api.html).

The snapshot does not say which ground-truth box a true positive found; ``build_evaluation``
pairs each true-positive prediction with the unclaimed same-label ground-truth box it overlaps
most (highest confidence first), and a ground-truth box no true positive claims is missed (a
false negative). Per-label counts follow: TP = true-positive predictions that found a box, FP =
false-positive predictions, FN = missed boxes; precision, recall and F1 from them (0/0 is 0).
Where the summary gives a number (precision, recall, F1, threshold) it is the one reported and
``source`` says "summary"; otherwise it is computed from the snapshot ("manifest"). A label's
threshold computed from the snapshot is the lowest confidence of a prediction the service
classed positive (TP or FP); the overall threshold is the mean of the labels' thresholds
("The average threshold for all labels", https://docs.aws.amazon.com/rekognition/latest/customlabels-dg/im-metrics-api.html).

Everything streams: manifests are read a line at a time and a malformed line is an
``EvaluationError`` naming the file and the line. No AWS SDK here: callers fetch the bytes.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Iterator, Mapping

EVALUATION_JOB = "rekognition-custom-labels-evaluation-job"
DETAILS = "rekognition-custom-labels-evaluation-details"
DETECTION, CLASSIFICATION = "groundtruth/object-detection", "groundtruth/image-classification"
TP, FP, FN, TN = "TP", "FP", "FN", "TN"
MISSED = FN  # a ground-truth box no true positive found
SUMMARY, MANIFEST = "summary", "manifest"
_FLAGS = (("is-true-positive", TP), ("is-false-positive", FP), ("is-false-negative", FN), ("is-true-negative", TN))


class EvaluationError(ValueError):
    """A summary file or manifest line is not what Custom Labels writes; says where and why."""


@dataclass(frozen=True)
class Box:
    """Pixels, as in Ground Truth annotations; None on an Annotation means image-level."""

    left: float
    top: float
    width: float
    height: float

    def iou(self, other: Box) -> float:
        w = min(self.left + self.width, other.left + other.width) - max(self.left, other.left)
        h = min(self.top + self.height, other.top + other.height) - max(self.top, other.top)
        inter = max(w, 0.0) * max(h, 0.0)
        union = self.width * self.height + other.width * other.height - inter
        return inter / union if union > 0 else 0.0


@dataclass
class Annotation:
    label: str
    box: Box | None
    outcome: str  # ground truth: TP (found) or FN (missed); prediction: TP, FP, FN or TN
    confidence: float | None = None  # predictions only, 0-1


@dataclass
class ImageResult:
    source_ref: str
    width: int | None
    height: int | None
    truths: list[Annotation] = field(default_factory=list)
    predictions: list[Annotation] = field(default_factory=list)


@dataclass
class Metrics:
    label: str | None  # None: the whole model
    precision: float | None
    recall: float | None
    f1: float | None
    threshold: float | None
    source: str  # where precision/recall/F1 come from: "summary" or "manifest"
    threshold_source: str | None  # "summary", "manifest" or None when unknown
    tp: int = 0
    fp: int = 0
    fn: int = 0
    testing_images: int | None = None


@dataclass
class Evaluation:
    version: str
    overall: Metrics
    labels: dict[str, Metrics]
    images: list[ImageResult]
    distribution: dict[str, Counter]  # "train"/"test" -> label -> boxes (or image labels)
    details: dict[str, Any] = field(default_factory=dict)  # the summary's EvaluationDetails
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["distribution"] = {side: dict(counts) for side, counts in self.distribution.items()}
        return doc


@dataclass(frozen=True)
class LabelDifference:
    label: str | None  # None: the whole model
    metric: str  # precision, recall, f1 or threshold
    before: float | None
    after: float | None

    @property
    def change(self) -> float | None:
        return None if self.before is None or self.after is None else self.after - self.before


def ratios(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    """Precision, recall, F1; 0/0 counts as 0."""
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


# -- summary file ------------------------------------------------------------------------
def _number(value: Any, where: str, *, optional: bool = False) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise EvaluationError(f"{where}: expected a number, got {value!r}")
    return float(value)


def parse_summary(data: bytes | str | Mapping[str, Any], source: str = "summary file") -> dict[str, Any]:
    """The summary file, checked: {"details", "aggregate": {precision, recall, f1}, "labels": {label: {...}}}."""
    if isinstance(data, Mapping):
        doc: Any = data
    else:
        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise EvaluationError(f"{source}: not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise EvaluationError(f"{source}: expected a JSON object")
    aggregate = doc.get("AggregatedEvaluationResults")
    if not isinstance(aggregate, dict):
        raise EvaluationError(f"{source}: AggregatedEvaluationResults is missing or not an object")
    numbers = aggregate.get("Metrics", aggregate)  # the reference nests them, the example does not
    if not isinstance(numbers, dict):
        raise EvaluationError(f"{source}: AggregatedEvaluationResults.Metrics is not an object")
    where = f"{source}: AggregatedEvaluationResults"
    overall = {
        "precision": _number(numbers.get("Precision"), f"{where}.Precision"),
        "recall": _number(numbers.get("Recall"), f"{where}.Recall"),
        "f1": _number(numbers.get("F1Score"), f"{where}.F1Score"),
    }
    results = doc.get("LabelEvaluationResults")
    if not isinstance(results, list):
        raise EvaluationError(f"{source}: LabelEvaluationResults is missing or not a list")
    labels: dict[str, dict[str, Any]] = {}
    for index, result in enumerate(results):
        where = f"{source}: LabelEvaluationResults[{index}]"
        if not isinstance(result, dict) or not isinstance(result.get("Label"), str) or not isinstance(result.get("Metrics"), dict):
            raise EvaluationError(f"{where}: expected an object with a string Label and a Metrics object")
        m = result["Metrics"]
        images = result.get("NumberOfTestingImages")
        if images is not None and (isinstance(images, bool) or not isinstance(images, int)):
            raise EvaluationError(f"{where}.NumberOfTestingImages: expected an integer, got {images!r}")
        labels[result["Label"]] = {
            "precision": _number(m.get("Precision"), f"{where}.Metrics.Precision"),
            "recall": _number(m.get("Recall"), f"{where}.Metrics.Recall"),
            "f1": _number(m.get("F1Score"), f"{where}.Metrics.F1Score"),
            "threshold": _number(m.get("Threshold"), f"{where}.Metrics.Threshold", optional=True),
            "testing_images": images,
        }
    details = doc.get("EvaluationDetails") or {}
    if not isinstance(details, dict):
        raise EvaluationError(f"{source}: EvaluationDetails is not an object")
    return {"details": details, "aggregate": overall, "labels": labels}


# -- manifests ---------------------------------------------------------------------------
def _lines(lines: Iterable[str | bytes], source: str) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, line in enumerate(lines, 1):
        if isinstance(line, bytes):
            try:
                line = line.decode("utf-8")
            except UnicodeDecodeError:
                raise EvaluationError(f"{source} line {number}: not UTF-8") from None
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except ValueError as exc:
            raise EvaluationError(f"{source} line {number}: not JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise EvaluationError(f"{source} line {number}: expected a JSON object")
        if not isinstance(doc.get("source-ref"), str):
            raise EvaluationError(f"{source} line {number}: source-ref is missing or not a string")
        yield number, doc


def _attributes(doc: dict[str, Any], where: str) -> Iterator[tuple[str, dict[str, Any], Any]]:
    """(attribute, metadata, value) of every labelling attribute of a line."""
    for key, meta in doc.items():
        if not key.endswith("-metadata"):
            continue
        attribute = key[: -len("-metadata")]
        if not isinstance(meta, dict) or meta.get("type") not in (DETECTION, CLASSIFICATION):
            raise EvaluationError(f"{where}: {key} must be an object of type {DETECTION} or {CLASSIFICATION}")
        yield attribute, meta, doc.get(attribute)


def _objects(attribute: str, meta: dict[str, Any], value: Any, where: str) -> tuple[tuple[int, int] | None, list[tuple[str, Box | None, dict[str, Any]]]]:
    """Image size and (label, box, per-object metadata) of one attribute."""
    if meta["type"] == CLASSIFICATION:
        name = meta.get("class-name")
        if not isinstance(name, str):
            raise EvaluationError(f"{where}: {attribute}-metadata has no class-name")
        return None, [(name, None, meta)]
    if not isinstance(value, dict):
        raise EvaluationError(f"{where}: {attribute} must be an object with annotations and image_size")
    size, annotations = value.get("image_size"), value.get("annotations")
    classes, objects = meta.get("class-map"), meta.get("objects")
    if not (isinstance(size, list) and len(size) == 1 and isinstance(size[0], dict)):
        raise EvaluationError(f"{where}: {attribute}.image_size must be a one-element list")
    if not isinstance(annotations, list) or not isinstance(objects, list) or len(objects) != len(annotations):
        raise EvaluationError(f"{where}: {attribute}.annotations and {attribute}-metadata.objects must be lists of equal length")
    if not isinstance(classes, dict):
        raise EvaluationError(f"{where}: {attribute}-metadata.class-map is missing")
    found = []
    for index, (box, obj) in enumerate(zip(annotations, objects)):
        try:
            name = classes[str(box["class_id"])]
            numbers = [float(box[k]) for k in ("left", "top", "width", "height")]
        except (KeyError, TypeError, ValueError):
            raise EvaluationError(f"{where}: {attribute}.annotations[{index}] lacks a class-map entry or a number") from None
        if not isinstance(name, str) or not isinstance(obj, dict):
            raise EvaluationError(f"{where}: {attribute}.annotations[{index}] has a bad class name or metadata object")
        found.append((name, Box(*numbers), obj))
    try:
        dims = int(size[0]["width"]), int(size[0]["height"])
    except (KeyError, TypeError, ValueError):
        raise EvaluationError(f"{where}: {attribute}.image_size needs integer width and height") from None
    return dims, found


def _outcome(obj: dict[str, Any], where: str) -> str:
    details = obj.get(DETAILS)
    if not isinstance(details, dict):
        raise EvaluationError(f"{where}: a prediction has no {DETAILS}")
    outcomes = [name for flag, name in _FLAGS if details.get(flag) is True]
    if len(outcomes) != 1:
        raise EvaluationError(f"{where}: {DETAILS} must set exactly one of {', '.join(f for f, _ in _FLAGS)}")
    return outcomes[0]


def parse_snapshot_line(doc: dict[str, Any], where: str) -> ImageResult:
    """One evaluation-manifest-snapshot line -> its ground truth and classified predictions."""
    image = ImageResult(doc["source-ref"], None, None)
    predicted = False
    for attribute, meta, value in _attributes(doc, where):
        size, objects = _objects(attribute, meta, value, where)
        if size:
            image.width, image.height = size
        if meta.get("job-name") == EVALUATION_JOB:
            predicted = True
            for name, box, obj in objects:
                confidence = _number(obj.get("confidence"), f"{where}: {attribute} confidence")
                image.predictions.append(Annotation(name, box, _outcome(obj, f"{where}: {attribute}"), confidence))
        else:
            image.truths.extend(Annotation(name, box, MISSED) for name, box, _ in objects)
    if not predicted:
        raise EvaluationError(f"{where}: no attribute whose metadata job-name is {EVALUATION_JOB} (not an evaluation manifest snapshot)")
    # A true positive finds the unclaimed same-label box it overlaps most; the rest are missed.
    for prediction in sorted(image.predictions, key=lambda p: -(p.confidence or 0.0)):
        if prediction.outcome != TP:
            continue
        candidates = [t for t in image.truths if t.label == prediction.label and t.outcome == MISSED]
        if not candidates:
            continue
        if prediction.box is None:
            best = candidates[0]
        else:
            best = max(candidates, key=lambda t: t.box.iou(prediction.box) if t.box else 0.0)
        best.outcome = TP
    return image


def parse_snapshot(lines: Iterable[str | bytes], source: str = "evaluation manifest") -> Iterator[ImageResult]:
    for number, doc in _lines(lines, source):
        yield parse_snapshot_line(doc, f"{source} line {number}")


def label_distribution(lines: Iterable[str | bytes], source: str = "manifest") -> Counter:
    """Label -> number of boxes (object detection) or labelled images (classification) in a
    Ground Truth manifest, the format this project writes (fashion_pipeline.manifest)."""
    counts: Counter = Counter()
    for number, doc in _lines(lines, source):
        where = f"{source} line {number}"
        for attribute, meta, value in _attributes(doc, where):
            if meta.get("job-name") == EVALUATION_JOB:
                continue  # a snapshot's predictions are not part of the data set
            counts.update(name for name, _, _ in _objects(attribute, meta, value, where)[1])
    return counts


# -- the evaluation ----------------------------------------------------------------------
def build_evaluation(
    version: str,
    *,
    summary: bytes | str | Mapping[str, Any] | None = None,
    snapshot: Iterable[str | bytes] | None = None,
    train_manifest: Iterable[str | bytes] | None = None,
    test_manifest: Iterable[str | bytes] | None = None,
    summary_source: str = "summary file",
    snapshot_source: str = "evaluation manifest",
) -> Evaluation:
    """The evaluation of one model version from whichever of its files are at hand.

    ``test_manifest`` defaults to the snapshot's ground truth for the test distribution."""
    if summary is None and snapshot is None:
        raise EvaluationError(f"{version}: neither a summary file nor an evaluation manifest to evaluate")
    parsed = parse_summary(summary, summary_source) if summary is not None else None
    notes: list[str] = []
    images: list[ImageResult] = []
    counts: dict[str, list[int]] = {}  # label -> tp, fp, fn, testing images
    lowest_positive: dict[str, float] = {}
    truth_counts: Counter = Counter()
    for image in parse_snapshot(snapshot or (), snapshot_source):
        images.append(image)
        for truth in image.truths:
            c = counts.setdefault(truth.label, [0, 0, 0, 0])
            c[0 if truth.outcome == TP else 2] += 1
            truth_counts[truth.label] += 1
        for label in {t.label for t in image.truths}:
            counts[label][3] += 1
        for p in image.predictions:
            c = counts.setdefault(p.label, [0, 0, 0, 0])
            c[1] += p.outcome == FP
            if p.outcome in (TP, FP) and p.confidence is not None:
                lowest_positive[p.label] = min(p.confidence, lowest_positive.get(p.label, 1.0))
    if snapshot is None:
        notes.append("No evaluation manifest snapshot: no per-image results and no TP/FP/FN counts.")
    names = list(parsed["labels"]) if parsed else []
    names += sorted(set(counts) - set(names))
    labels: dict[str, Metrics] = {}
    for name in names:
        tp, fp, fn, n_images = counts.get(name, [0, 0, 0, 0])
        reported = parsed["labels"].get(name) if parsed else None
        if reported:
            p, r, f1, source = reported["precision"], reported["recall"], reported["f1"], SUMMARY
            n_images = reported["testing_images"] if reported["testing_images"] is not None else n_images
        elif snapshot is not None:
            (p, r, f1), source = ratios(tp, fp, fn), MANIFEST
        else:
            p = r = f1 = None
            source = SUMMARY
        if reported and reported["threshold"] is not None:
            threshold, threshold_source = reported["threshold"], SUMMARY
        elif name in lowest_positive:
            threshold, threshold_source = lowest_positive[name], MANIFEST
        else:
            threshold, threshold_source = None, None
        labels[name] = Metrics(name, p, r, f1, threshold, source, threshold_source, tp, fp, fn, n_images)
    if parsed:
        if snapshot is not None:
            absent = sorted(set(counts) - set(parsed["labels"]))
            if absent:
                notes.append(f"Labels in the manifest but not in the summary (metrics computed from the manifest): {', '.join(absent)}.")
    totals = [sum(m.tp for m in labels.values()), sum(m.fp for m in labels.values()), sum(m.fn for m in labels.values())]
    known = [m.threshold for m in labels.values() if m.threshold is not None]
    sources = {m.threshold_source for m in labels.values() if m.threshold_source}
    overall_threshold = sum(known) / len(known) if known else None
    threshold_source = (sources.pop() if len(sources) == 1 else "summary+manifest") if sources else None
    if parsed:
        agg = parsed["aggregate"]
        overall = Metrics(None, agg["precision"], agg["recall"], agg["f1"], overall_threshold, SUMMARY, threshold_source, *totals, len(images) or parsed["details"].get("NumberOfTestingImages"))
    else:
        overall = Metrics(None, *ratios(*totals), overall_threshold, MANIFEST, threshold_source, *totals, len(images))
        notes.append("No summary file: precision, recall and F1 are computed from the evaluation manifest.")
    if threshold_source == MANIFEST:
        notes.append("Thresholds computed from the manifest: the lowest confidence the service classed positive.")
    distribution = {
        "train": label_distribution(train_manifest, "train manifest") if train_manifest is not None else Counter(),
        "test": label_distribution(test_manifest, "test manifest") if test_manifest is not None else truth_counts,
    }
    return Evaluation(version, overall, labels, images, distribution, parsed["details"] if parsed else {}, notes)


def compare(a: Evaluation, b: Evaluation) -> list[LabelDifference]:
    """Per label (overall first, label None), how each metric moved from ``a`` to ``b``; a label
    only one of them knows has None on the other side."""
    rows = [(None, a.overall, b.overall)]
    rows += [(name, a.labels.get(name), b.labels.get(name)) for name in list(a.labels) + [n for n in b.labels if n not in a.labels]]
    differences = []
    for name, before, after in rows:
        for metric in ("precision", "recall", "f1", "threshold"):
            differences.append(LabelDifference(
                name, metric,
                getattr(before, metric) if before else None, getattr(after, metric) if after else None,
            ))  # fmt: skip
    return differences


# -- from a DescribeProjectVersions answer ---------------------------------------------------
@dataclass(frozen=True)
class EvaluationFiles:
    """The S3Objects ({"Bucket", "Name"[, "Version"]}) a ProjectVersionDescription names."""

    summary: dict[str, Any] | None  # EvaluationResult.Summary.S3Object
    testing: list[dict[str, Any]]  # TestingDataResult.Output.Assets[].GroundTruthManifest.S3Object
    training: list[dict[str, Any]]  # TrainingDataResult.Output.Assets[].GroundTruthManifest.S3Object


def _assets(result: Any) -> list[dict[str, Any]]:
    output = result.get("Output") if isinstance(result, dict) else None
    assets = output.get("Assets") if isinstance(output, dict) else None
    objects = [((a or {}).get("GroundTruthManifest") or {}).get("S3Object") for a in assets or []]
    return [o for o in objects if isinstance(o, dict)]


def evaluation_files(description: Mapping[str, Any]) -> EvaluationFiles:
    """Where a trained version's evaluation files are (botocore's ProjectVersionDescription)."""
    evaluation = description.get("EvaluationResult") or {}
    summary = (evaluation.get("Summary") or {}).get("S3Object")
    return EvaluationFiles(summary if isinstance(summary, dict) else None,
                           _assets(description.get("TestingDataResult")), _assets(description.get("TrainingDataResult")))


def stream_lines(stream: Any, chunk: int = 1 << 16) -> Iterator[bytes]:
    """The lines of anything with ``read(n)`` (a file, botocore's StreamingBody), one at a time."""
    pending = b""
    while True:
        data = stream.read(chunk)
        if not data:
            break
        pending += data
        *lines, pending = pending.split(b"\n")
        yield from lines
    if pending:
        yield pending


def version_name(description: Mapping[str, Any]) -> str:
    """The version name inside a ProjectVersionArn (…:project/{p}/version/{name}/{created})."""
    arn = str(description.get("ProjectVersionArn") or "")
    parts = arn.split("/")
    return parts[-2] if len(parts) >= 5 and parts[-3] == "version" else arn


def load_evaluation(description: Mapping[str, Any], open_object: Any, version: str | None = None) -> Evaluation:
    """The Evaluation of a trained version: ``open_object(bucket, key)`` returns something with
    ``read(n)`` for each file the description names (the caller does the S3 I/O)."""
    files = evaluation_files(description)
    name = version or version_name(description)
    if files.summary is None and not files.testing:
        raise EvaluationError(f"{name}: the description names no summary file and no evaluation manifest (is it TRAINING_COMPLETED?)")

    def uri(obj: dict[str, Any]) -> str:
        return f"s3://{obj.get('Bucket')}/{obj.get('Name')}"

    def lines(objects: list[dict[str, Any]]) -> Iterator[bytes]:
        for obj in objects:
            yield from stream_lines(open_object(obj["Bucket"], obj["Name"]))

    summary = open_object(files.summary["Bucket"], files.summary["Name"]).read() if files.summary else None
    testing = files.testing
    return build_evaluation(
        name,
        summary=summary,
        snapshot=lines(testing) if testing else None,
        train_manifest=lines(files.training) if files.training else None,
        summary_source=uri(files.summary) if files.summary else "summary file",
        snapshot_source=", ".join(uri(o) for o in testing) or "evaluation manifest",
    )
