"""The evaluation core against files shaped like the ones Custom Labels documents."""

from __future__ import annotations

import copy
import json

import pytest

from fashion_pipeline.evaluation import (
    FN, FP, MANIFEST, SUMMARY, TN, TP, EvaluationError, build_evaluation, compare, label_distribution, parse_summary,
)  # fmt: skip
from fashion_pipeline.labels import LabelCatalogue
from fashion_pipeline.manifest import manifest_line
from fashion_pipeline.records import Box, Record

# The example summary file of "Accessing the model summary file", verbatim
# (https://docs.aws.amazon.com/rekognition/latest/customlabels-dg/im-summary-file-api.html).
DOCUMENTED_SUMMARY = {
    "Version": 1,
    "AggregatedEvaluationResults": {
        "ConfusionMatrix": [
            {"GroundTruthLabel": "CAP", "PredictedLabel": "CAP", "Value": 0.9948717948717949},
            {"GroundTruthLabel": "CAP", "PredictedLabel": "WATCH", "Value": 0.008547008547008548},
            {"GroundTruthLabel": "WATCH", "PredictedLabel": "CAP", "Value": 0.1794871794871795},
            {"GroundTruthLabel": "WATCH", "PredictedLabel": "WATCH", "Value": 0.7008547008547008},
        ],
        "F1Score": 0.9726959470546408,
        "Precision": 0.9719115848331294,
        "Recall": 0.9735042735042735,
    },
    "EvaluationDetails": {
        "EvaluationEndTimestamp": "2019-11-21T07:30:23.910943",
        "Labels": ["CAP", "WATCH"],
        "NumberOfTestingImages": 624,
        "NumberOfTrainingImages": 5216,
        "ProjectVersionArn": "arn:aws:rekognition:us-east-1:nnnnnnnnn:project/my-project/version/v0/1574317227432",
    },
    "LabelEvaluationResults": [
        {"Label": "CAP", "Metrics": {"F1Score": 0.9794344473007711, "Precision": 0.9819587628865979,
                                     "Recall": 0.9769230769230769, "Threshold": 0.9879502058029175}, "NumberOfTestingImages": 390},
        {"Label": "WATCH", "Metrics": {"F1Score": 0.9659574468085106, "Precision": 0.961864406779661,
                                       "Recall": 0.9700854700854701, "Threshold": 0.014450683258473873}, "NumberOfTestingImages": 234},
    ],
}  # fmt: skip


def details(outcome):
    # The field of "Interpreting the evaluation manifest snapshot"
    # (https://docs.aws.amazon.com/rekognition/latest/customlabels-dg/im-evaluation-manifest-snapshot-api.html).
    return {"version": 1, "ground-truth-labelling-jobs": ["rekognition-custom-labels-training-job"],
            "is-true-positive": outcome == TP, "is-true-negative": outcome == TN,
            "is-false-positive": outcome == FP, "is-false-negative": outcome == FN,
            "is-present-in-ground-truth": outcome in (TP, FN)}  # fmt: skip


def snapshot_line(name, truths, predictions, size=(1024, 768)):
    """A line shaped as the documented object-detection example of the snapshot page: ground
    truth under rekognition-custom-labels-training-0, predictions under
    rekognition-custom-labels-evaluation (job rekognition-custom-labels-evaluation-job)."""
    classes = {"0": "Cap", "1": "Watch"}
    ids = {v: int(k) for k, v in classes.items()}
    image_size = [{"width": size[0], "depth": 3, "height": size[1]}]

    def annotations(items):
        return [{"class_id": ids[label], "width": w, "top": t, "height": h, "left": left} for label, (left, t, w, h), *_ in items]

    return json.dumps({
        "source-ref": f"s3://test-bucket/dataset/{name}.jpeg",
        "rekognition-custom-labels-training-0": {"annotations": annotations(truths), "image_size": image_size},
        "rekognition-custom-labels-training-0-metadata": {
            "job-name": "rekognition-custom-labels-training-job", "class-map": classes, "human-annotated": "yes",
            "objects": [{"confidence": 1.0} for _ in truths], "creation-date": "2019-10-21T22:02:18.432644",
            "type": "groundtruth/object-detection",
        },
        "rekognition-custom-labels-evaluation": {"annotations": annotations(predictions), "image_size": image_size},
        "rekognition-custom-labels-evaluation-metadata": {
            "confidence": 0.95, "job-name": "rekognition-custom-labels-evaluation-job", "class-map": classes,
            "human-annotated": "no",
            "objects": [{"confidence": conf, "rekognition-custom-labels-evaluation-details": details(outcome)}
                        for _, _, conf, outcome in predictions],
            "creation-date": "2019-10-21T22:02:18.432644", "type": "groundtruth/object-detection",
        },
    })  # fmt: skip


# Three test images, counted by hand:
#   one: Cap found (TP, the documented box), a second Cap missed, a Watch predicted where there is none (FP);
#   two: Watch found (TP); a Cap prediction below the threshold with nothing there (TN);
#   three: a Cap predicted below the threshold where there is one (FN prediction): the Cap is missed.
# Cap: TP 1, FP 0, FN 2 -> P 1, R 1/3, F1 1/2. Watch: TP 1, FP 1, FN 0 -> P 1/2, R 1, F1 2/3.
# Overall: TP 2, FP 1, FN 2 -> P 2/3, R 1/2, F1 4/7.
SNAPSHOT = [
    snapshot_line("one", [("Cap", (712, 409, 39, 63)), ("Cap", (100, 100, 50, 50))],
                  [("Cap", (712, 409, 39, 63), 0.95, TP), ("Watch", (300, 300, 20, 20), 0.8, FP)]),
    snapshot_line("two", [("Watch", (10, 10, 30, 30))],
                  [("Watch", (11, 11, 30, 30), 0.7, TP), ("Cap", (500, 500, 10, 10), 0.3, TN)]),
    "",  # blank lines are skipped, as in any JSON Lines file
    snapshot_line("three", [("Cap", (0, 0, 20, 20))], [("Cap", (0, 0, 20, 20), 0.4, FN)]),
]  # fmt: skip


def test_documented_summary_is_read_both_nested_and_flat():
    flat = parse_summary(json.dumps(DOCUMENTED_SUMMARY))
    assert flat["aggregate"] == {"precision": 0.9719115848331294, "recall": 0.9735042735042735, "f1": 0.9726959470546408}
    assert flat["labels"]["WATCH"]["threshold"] == 0.014450683258473873
    assert flat["labels"]["CAP"]["testing_images"] == 390
    # The reference page (im-summary-file.html) nests the aggregate under "Metrics".
    nested = copy.deepcopy(DOCUMENTED_SUMMARY)
    aggregate = nested["AggregatedEvaluationResults"]
    nested["AggregatedEvaluationResults"] = {"Metrics": aggregate}
    assert parse_summary(nested)["aggregate"] == flat["aggregate"]


def test_metrics_from_the_manifest_alone_match_the_hand_count():
    ev = build_evaluation("v1", snapshot=SNAPSHOT)
    cap, watch = ev.labels["Cap"], ev.labels["Watch"]
    assert (cap.tp, cap.fp, cap.fn) == (1, 0, 2)
    assert (cap.precision, cap.recall, cap.f1) == pytest.approx((1.0, 1 / 3, 0.5))
    assert (watch.tp, watch.fp, watch.fn) == (1, 1, 0)
    assert (watch.precision, watch.recall, watch.f1) == pytest.approx((0.5, 1.0, 2 / 3))
    assert (ev.overall.precision, ev.overall.recall, ev.overall.f1) == pytest.approx((2 / 3, 0.5, 4 / 7))
    assert ev.overall.source == cap.source == MANIFEST
    # No summary: the threshold is the lowest confidence the service classed positive.
    assert (cap.threshold, cap.threshold_source) == (0.95, MANIFEST)
    assert watch.threshold == 0.7
    assert ev.overall.threshold == pytest.approx(0.825)
    assert cap.testing_images == 2 and watch.testing_images == 1
    assert ev.distribution["test"] == {"Cap": 3, "Watch": 1}
    assert any("computed from the evaluation manifest" in n for n in ev.notes)


def test_per_image_outcomes():
    one, two, three = build_evaluation("v1", snapshot=SNAPSHOT).images
    assert one.source_ref == "s3://test-bucket/dataset/one.jpeg" and (one.width, one.height) == (1024, 768)
    assert [(t.label, t.outcome) for t in one.truths] == [("Cap", TP), ("Cap", FN)]
    assert [(p.label, p.outcome, p.confidence) for p in one.predictions] == [("Cap", TP, 0.95), ("Watch", FP, 0.8)]
    assert one.truths[0].box.left == 712 and one.predictions[1].box.width == 20
    assert [t.outcome for t in two.truths] == [TP]
    assert [p.outcome for p in two.predictions] == [TP, TN]
    assert [t.outcome for t in three.truths] == [FN]  # the only Cap prediction fell below the threshold
    assert [p.outcome for p in three.predictions] == [FN]


def test_a_true_positive_claims_the_box_it_overlaps_most():
    line = snapshot_line("x", [("Cap", (0, 0, 10, 10)), ("Cap", (100, 100, 40, 40))], [("Cap", (101, 99, 40, 40), 0.9, TP)])
    (image,) = build_evaluation("v", snapshot=[line]).images
    assert [t.outcome for t in image.truths] == [FN, TP]


def test_summary_numbers_win_and_say_so():
    summary = copy.deepcopy(DOCUMENTED_SUMMARY)
    for result in summary["LabelEvaluationResults"]:
        result["Label"] = result["Label"].title()  # the fixture's labels are Cap and Watch
    ev = build_evaluation("v0", summary=json.dumps(summary).encode(), snapshot=SNAPSHOT)
    assert ev.overall.f1 == 0.9726959470546408 and ev.overall.source == SUMMARY
    assert ev.labels["Cap"].threshold == 0.9879502058029175 and ev.labels["Cap"].threshold_source == SUMMARY
    assert ev.labels["Cap"].testing_images == 390
    assert ev.labels["Cap"].fn == 2  # the counts still come from the manifest
    assert ev.overall.threshold == pytest.approx((0.9879502058029175 + 0.014450683258473873) / 2)
    assert ev.details["NumberOfTrainingImages"] == 5216
    assert list(ev.labels) == ["Cap", "Watch"]  # the summary's order (by F1)


def test_summary_without_a_snapshot():
    ev = build_evaluation("v0", summary=DOCUMENTED_SUMMARY)
    assert ev.images == [] and ev.labels["CAP"].f1 == 0.9794344473007711
    assert ev.overall.testing_images == 624
    assert any("No evaluation manifest snapshot" in n for n in ev.notes)


def test_a_label_the_summary_lacks_is_computed_and_noted():
    ev = build_evaluation("v0", summary=DOCUMENTED_SUMMARY, snapshot=SNAPSHOT)
    assert ev.labels["Cap"].source == MANIFEST and ev.labels["CAP"].source == SUMMARY
    assert any("not in the summary" in n and "Cap" in n for n in ev.notes)


def test_nothing_to_evaluate_is_an_error():
    with pytest.raises(EvaluationError, match="neither"):
        build_evaluation("v9")


@pytest.mark.parametrize(
    ("summary", "message"),
    [
        (b"{not json", "summary file: not JSON"),
        ([], "expected a JSON object"),
        ({"LabelEvaluationResults": []}, "AggregatedEvaluationResults is missing"),
        ({"AggregatedEvaluationResults": {"F1Score": 1, "Precision": "x", "Recall": 1}, "LabelEvaluationResults": []},
         r"AggregatedEvaluationResults.Precision: expected a number, got 'x'"),
        ({"AggregatedEvaluationResults": {"F1Score": 1, "Precision": 1, "Recall": 1}, "LabelEvaluationResults": [{"Label": 3}]},
         r"LabelEvaluationResults\[0\]: expected an object"),
        ({"AggregatedEvaluationResults": {"F1Score": 1, "Precision": 1, "Recall": 1},
          "LabelEvaluationResults": [{"Label": "a", "Metrics": {"F1Score": 1, "Precision": 1, "Recall": float("nan")}}]},
         r"LabelEvaluationResults\[0\].Metrics.Recall"),
    ],
)  # fmt: skip
def test_malformed_summary_names_the_place(summary, message):
    with pytest.raises(EvaluationError, match=message):
        parse_summary(json.dumps(summary) if isinstance(summary, (dict, list)) else summary)


def _broken(mutate):
    doc = json.loads(SNAPSHOT[1])
    mutate(doc)
    return [SNAPSHOT[0], json.dumps(doc)]


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([SNAPSHOT[0], "{oops"], "evaluation manifest line 2: not JSON"),
        ([SNAPSHOT[0], "[1]"], "line 2: expected a JSON object"),
        ([SNAPSHOT[0], b"\xff\xfe"], "line 2: not UTF-8"),
        (_broken(lambda d: d.pop("source-ref")), "line 2: source-ref is missing"),
        (_broken(lambda d: d["rekognition-custom-labels-evaluation-metadata"]["objects"][0].pop("rekognition-custom-labels-evaluation-details")),
         "line 2: rekognition-custom-labels-evaluation: a prediction has no rekognition-custom-labels-evaluation-details"),
        (_broken(lambda d: d["rekognition-custom-labels-evaluation-metadata"]["objects"][0]["rekognition-custom-labels-evaluation-details"].update({"is-false-positive": True})),
         "line 2: .*exactly one of"),
        (_broken(lambda d: d["rekognition-custom-labels-training-0"]["annotations"][0].update({"class_id": 7})),
         r"line 2: rekognition-custom-labels-training-0.annotations\[0\] lacks a class-map entry"),
        (_broken(lambda d: d["rekognition-custom-labels-evaluation-metadata"]["objects"].pop()),
         "line 2: .*must be lists of equal length"),
        (_broken(lambda d: d["rekognition-custom-labels-evaluation-metadata"]["objects"][0].update({"confidence": "high"})),
         "line 2: rekognition-custom-labels-evaluation confidence: expected a number"),
        (_broken(lambda d: d["rekognition-custom-labels-evaluation-metadata"].update({"job-name": "other"})),
         "line 2: no attribute whose metadata job-name is rekognition-custom-labels-evaluation-job"),
        (_broken(lambda d: d["rekognition-custom-labels-training-0-metadata"].update({"type": "groundtruth/semantic-segmentation"})),
         "line 2: rekognition-custom-labels-training-0-metadata must be an object of type"),
    ],
)  # fmt: skip
def test_malformed_snapshot_line_names_the_line(lines, message):
    with pytest.raises(EvaluationError, match=message):
        build_evaluation("v1", snapshot=lines)


def test_the_snapshot_is_read_a_line_at_a_time():
    def lines():
        yield SNAPSHOT[0]
        yield "{broken"
        raise AssertionError("read past the bad line")

    with pytest.raises(EvaluationError, match="line 2"):
        build_evaluation("v1", snapshot=lines())


def test_classification_lines_as_documented():
    # The image-classification example of the snapshot page.
    line = {
        "source-ref": "s3://test-bucket/dataset/beckham.jpeg",
        "rekognition-custom-labels-training-0": 1,
        "rekognition-custom-labels-training-0-metadata": {
            "confidence": 1.0, "job-name": "rekognition-custom-labels-training-job", "class-name": "Football",
            "human-annotated": "yes", "creation-date": "2019-09-06T00:07:25.488243", "type": "groundtruth/image-classification",
        },
        "rekognition-custom-labels-evaluation-0": 1,
        "rekognition-custom-labels-evaluation-0-metadata": {
            "confidence": 0.95, "job-name": "rekognition-custom-labels-evaluation-job", "class-name": "Football",
            "human-annotated": "no", "creation-date": "2019-09-06T00:07:25.488243", "type": "groundtruth/image-classification",
            "rekognition-custom-labels-evaluation-details": details(TP),
        },
    }  # fmt: skip
    ev = build_evaluation("v1", snapshot=[json.dumps(line)])
    (image,) = ev.images
    assert [(t.label, t.box, t.outcome) for t in image.truths] == [("Football", None, TP)]
    assert (ev.labels["Football"].tp, ev.labels["Football"].f1) == (1, 1.0)


def test_train_distribution_from_this_projects_manifest_lines():
    catalogue = LabelCatalogue()
    record = Record("a.json", "s3://bucket/images/a.jpg", 640, 480, 3, "1",
                    (Box("skirt", 10, 20, 30, 40), Box("skirt", 1, 2, 3, 4), Box("sling", 5, 6, 7, 8)), "2024-05-01T12:00:00")  # fmt: skip
    line = manifest_line(record, [(catalogue.label_for(b.category), b) for b in record.boxes], catalogue)
    counts = label_distribution([line, line.encode()], "train manifest")
    skirt, sling = catalogue.label_for("skirt"), catalogue.label_for("sling")
    assert counts == {skirt: 4, sling: 2} if skirt != sling else {skirt: 6}
    ev = build_evaluation("v1", snapshot=SNAPSHOT, train_manifest=[line])
    assert sum(ev.distribution["train"].values()) == 3
    with pytest.raises(EvaluationError, match="train manifest line 2: not JSON"):
        build_evaluation("v1", snapshot=SNAPSHOT, train_manifest=[line, "nope"])


def test_compare_gives_per_label_differences():
    before = build_evaluation("v1", snapshot=SNAPSHOT)
    after = build_evaluation("v2", snapshot=SNAPSHOT[:2])  # without image three: Cap recall 1/2
    differences = {(d.label, d.metric): d for d in compare(before, after)}
    cap = differences[("Cap", "recall")]
    assert (cap.before, cap.after, cap.change) == pytest.approx((1 / 3, 0.5, 1 / 6))
    assert differences[("Watch", "f1")].change == pytest.approx(0.0)
    overall = differences[(None, "f1")]
    assert overall.before == pytest.approx(4 / 7) and overall.after == pytest.approx(2 / 3)
    gone = build_evaluation("v3", snapshot=[SNAPSHOT[1]])
    only_watch = {(d.label, d.metric): d for d in compare(gone, before)}
    assert only_watch[("Cap", "precision")].before is not None  # Cap's TN prediction still names the label
    assert compare(before, before)[0].change == 0.0


def test_to_dict_is_json():
    doc = build_evaluation("v1", snapshot=SNAPSHOT).to_dict()
    assert json.loads(json.dumps(doc))["labels"]["Cap"]["fn"] == 2
