"""The Custom Labels emulator through real boto3 clients, under mock_aws and a moto server."""

import io
import json
import time
import urllib.request

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.server import ThreadedMotoServer
from PIL import Image

from fashion_pipeline.labels import LabelCatalogue
from fashion_pipeline_tools.local.custom_labels_emulator import install
from fashion_pipeline.manifest import manifest_line
from fashion_pipeline.records import Box, Record

BUCKET = "cl-data"
OUTPUT = {"S3Bucket": BUCKET, "S3KeyPrefix": "output/"}
NO_RETRY = Config(retries={"total_max_attempts": 1, "mode": "standard"})


def image(size, colour, fmt="PNG"):
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format=fmt)
    return out.getvalue()


IMG_A = image((200, 100), (200, 30, 30))  # in train and in test
IMG_B = image((160, 120), (30, 200, 30), "JPEG")  # train only
IMG_C = image((100, 100), (30, 30, 200))  # test only: the memoriser has never seen it
IMG_D = image((100, 100), (90, 90, 90))  # never in a manifest


def line(key, size, boxes):
    record = Record("ann.json", f"s3://{BUCKET}/{key}", size[0], size[1], 3, None, tuple(b for _, b in boxes), "2024-01-01T00:00:00")
    return manifest_line(record, boxes, LabelCatalogue())


TRAIN = [
    line("img/a.png", (200, 100), [("trousers", Box("trousers", 20, 10, 100, 50)), ("skirt", Box("skirt", 120, 40, 60, 50))]),
    line("img/b.jpg", (160, 120), [("shorts", Box("shorts", 0, 0, 80, 60))]),
]
TEST = [TRAIN[0], line("img/c.png", (100, 100), [("trousers", Box("trousers", 10, 10, 50, 50))])]


@pytest.fixture
def emulator():
    controller = install()
    controller.reset()
    controller.settings(dataset_ticks=0, training_ticks=0, start_ticks=0, stop_ticks=0)
    yield controller
    controller.reset()


def put_data(s3, train=TRAIN, test=TEST):
    s3.create_bucket(Bucket=BUCKET)
    for key, data in (("img/a.png", IMG_A), ("img/b.jpg", IMG_B), ("img/c.png", IMG_C), ("img/d.png", IMG_D)):
        s3.put_object(Bucket=BUCKET, Key=key, Body=data)
    s3.put_object(Bucket=BUCKET, Key="train.manifest", Body="\n".join(train) + "\n")
    s3.put_object(Bucket=BUCKET, Key="test.manifest", Body="\n".join(test) + "\n")


def trainer_rekognition(statements):
    """Inside mock_aws: the test data put, an IAM user "trainer" with only ``statements``, and a
    Rekognition client calling as that user (IAM is enforced once the caller enters enforcing())."""
    admin = boto3.Session(region_name="us-east-1")
    put_data(admin.client("s3"))
    iam = admin.client("iam")
    iam.create_user(UserName="trainer")
    keys = iam.create_access_key(UserName="trainer")["AccessKey"]
    policy = {"Version": "2012-10-17", "Statement": statements}
    iam.put_user_policy(UserName="trainer", PolicyName="p", PolicyDocument=json.dumps(policy))
    return boto3.client("rekognition", region_name="us-east-1", config=NO_RETRY,
                        aws_access_key_id=keys["AccessKeyId"], aws_secret_access_key=keys["SecretAccessKey"])


@pytest.fixture
def aws(emulator):
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        put_data(s3)
        yield s3, boto3.client("rekognition", region_name="us-east-1", config=NO_RETRY)


def source(key):
    return {"GroundTruthManifest": {"S3Object": {"Bucket": BUCKET, "Name": key}}}


def wait(describe, path, done, limit=10):
    """Poll like a state machine would; returns the final description and the statuses seen."""
    seen = []
    for _ in range(limit):
        described = describe()
        for step in path:
            described = described[step]
        seen.append(described["Status"])
        if described["Status"] in done:
            return described, seen
    raise AssertionError(f"stuck at {seen}")


def make_model(rek, name="clothes", version="v1", train="train.manifest", test="test.manifest", output=OUTPUT):
    project = rek.create_project(ProjectName=name)["ProjectArn"]
    for kind, key in (("TRAIN", train), ("TEST", test)):
        arn = rek.create_dataset(ProjectArn=project, DatasetType=kind, DatasetSource=source(key))["DatasetArn"]
        wait(lambda: rek.describe_dataset(DatasetArn=arn), ["DatasetDescription"], {"CREATE_COMPLETE", "CREATE_FAILED"})
    version_arn = rek.create_project_version(ProjectArn=project, VersionName=version, OutputConfig=output)["ProjectVersionArn"]
    return project, version_arn


def describe_version(rek, project, version="v1"):
    return lambda: rek.describe_project_versions(ProjectArn=project, VersionNames=[version])["ProjectVersionDescriptions"][0]


def error_code(excinfo):
    return excinfo.value.response["Error"]["Code"]


def test_full_lifecycle_with_honest_evaluation_and_memorised_detections(aws, emulator):
    s3, rek = aws
    emulator.settings(dataset_ticks=1, training_ticks=2, start_ticks=1, stop_ticks=1)

    project = rek.create_project(ProjectName="clothes")["ProjectArn"]
    assert project.startswith("arn:aws:rekognition:us-east-1:123456789012:project/clothes/")
    train = rek.create_dataset(ProjectArn=project, DatasetType="TRAIN", DatasetSource=source("train.manifest"))["DatasetArn"]
    test = rek.create_dataset(ProjectArn=project, DatasetType="TEST", DatasetSource=source("test.manifest"))["DatasetArn"]
    assert ":project/clothes/dataset/train/" in train and ":project/clothes/dataset/test/" in test
    described, seen = wait(lambda: rek.describe_dataset(DatasetArn=train), ["DatasetDescription"], {"CREATE_COMPLETE"})
    assert seen == ["CREATE_IN_PROGRESS", "CREATE_COMPLETE"]
    assert described["StatusMessageCode"] == "SUCCESS"
    assert described["DatasetStats"] == {"LabeledEntries": 2, "TotalEntries": 2, "TotalLabels": 3, "ErrorEntries": 0}
    wait(lambda: rek.describe_dataset(DatasetArn=test), ["DatasetDescription"], {"CREATE_COMPLETE"})
    datasets = rek.describe_projects(ProjectNames=["clothes"])["ProjectDescriptions"][0]["Datasets"]
    assert {(d["DatasetType"], d["Status"]) for d in datasets} == {("TRAIN", "CREATE_COMPLETE"), ("TEST", "CREATE_COMPLETE")}

    version = rek.create_project_version(ProjectArn=project, VersionName="v1", OutputConfig=OUTPUT)["ProjectVersionArn"]
    assert ":project/clothes/version/v1/" in version
    described, seen = wait(describe_version(rek, project), [], {"TRAINING_COMPLETED", "TRAINING_FAILED"})
    assert seen == ["TRAINING_IN_PROGRESS", "TRAINING_IN_PROGRESS", "TRAINING_COMPLETED"]
    assert described["ProjectVersionArn"] == version and described["OutputConfig"] == OUTPUT
    summary_location = described["EvaluationResult"]["Summary"]["S3Object"]
    assert summary_location == {"Bucket": BUCKET, "Name": "output/EvaluationSummary-clothes-v1.json"}

    # Test set: image A (memorised, both boxes found) and image C (unseen, its trousers missed).
    summary = json.loads(s3.get_object(Bucket=BUCKET, Key=summary_location["Name"])["Body"].read())
    assert summary["Version"] == 1
    assert summary["AggregatedEvaluationResults"] == pytest.approx({"Precision": 1.0, "Recall": 2 / 3, "F1Score": 0.8})
    assert described["EvaluationResult"]["F1Score"] == pytest.approx(0.8)
    details = summary["EvaluationDetails"]
    assert details["ProjectVersionArn"] == version and details["Labels"] == ["shorts", "skirt", "trousers"]
    assert (details["NumberOfTrainingImages"], details["NumberOfTestingImages"]) == (2, 2)
    by_label = [(r["Label"], r["NumberOfTestingImages"], r["Metrics"]) for r in summary["LabelEvaluationResults"]]
    assert by_label == [
        ("skirt", 1, {"F1Score": 1.0, "Precision": 1.0, "Recall": 1.0, "Threshold": 0.5}),
        ("trousers", 2, pytest.approx({"F1Score": 2 / 3, "Precision": 1.0, "Recall": 0.5, "Threshold": 0.5})),
        ("shorts", 0, {"F1Score": 0.0, "Precision": 0.0, "Recall": 0.0, "Threshold": 0.5}),
    ]

    with pytest.raises(ClientError) as excinfo:
        rek.detect_custom_labels(ProjectVersionArn=version, Image={"Bytes": IMG_A})
    assert error_code(excinfo) == "ResourceNotReadyException"
    assert rek.start_project_version(ProjectVersionArn=version, MinInferenceUnits=1)["Status"] == "STARTING"
    described, seen = wait(describe_version(rek, project), [], {"RUNNING"})
    assert seen == ["STARTING", "RUNNING"] and described["MinInferenceUnits"] == 1

    labels = rek.detect_custom_labels(ProjectVersionArn=version, Image={"Bytes": IMG_A})["CustomLabels"]
    assert [(x["Name"], x["Confidence"], x["Geometry"]["BoundingBox"]) for x in labels] == [
        ("skirt", 99.0, pytest.approx({"Left": 0.6, "Top": 0.4, "Width": 0.3, "Height": 0.5})),
        ("trousers", 99.0, pytest.approx({"Left": 0.1, "Top": 0.1, "Width": 0.5, "Height": 0.5})),
    ]
    labels = rek.detect_custom_labels(ProjectVersionArn=version, Image={"S3Object": {"Bucket": BUCKET, "Name": "img/b.jpg"}})["CustomLabels"]
    assert [(x["Name"], x["Geometry"]["BoundingBox"]) for x in labels] == [("shorts", {"Left": 0.0, "Top": 0.0, "Width": 0.5, "Height": 0.5})]
    assert [x["Name"] for x in rek.detect_custom_labels(ProjectVersionArn=version, Image={"Bytes": IMG_A}, MaxResults=1)["CustomLabels"]] == ["skirt"]
    assert rek.detect_custom_labels(ProjectVersionArn=version, Image={"Bytes": IMG_A}, MinConfidence=99.5)["CustomLabels"] == []
    assert rek.detect_custom_labels(ProjectVersionArn=version, Image={"Bytes": IMG_C})["CustomLabels"] == []
    assert rek.detect_custom_labels(ProjectVersionArn=version, Image={"Bytes": IMG_D})["CustomLabels"] == []

    assert rek.stop_project_version(ProjectVersionArn=version)["Status"] == "STOPPING"
    _, seen = wait(describe_version(rek, project), [], {"STOPPED"})
    assert seen == ["STOPPING", "STOPPED"]
    with pytest.raises(ClientError) as excinfo:
        rek.delete_project(ProjectArn=project)
    assert error_code(excinfo) == "ResourceInUseException"
    # Deleting is asynchronous: a model being deleted still holds its project.
    assert rek.delete_project_version(ProjectVersionArn=version)["Status"] == "DELETING"
    with pytest.raises(ClientError) as excinfo:
        rek.delete_project(ProjectArn=project)
    assert error_code(excinfo) == "ResourceInUseException"
    assert [d["Status"] for d in rek.describe_project_versions(ProjectArn=project)["ProjectVersionDescriptions"]] == ["DELETING"]
    assert rek.describe_project_versions(ProjectArn=project)["ProjectVersionDescriptions"] == []
    assert rek.delete_project(ProjectArn=project)["Status"] == "DELETING"
    assert [d["Status"] for d in rek.describe_projects()["ProjectDescriptions"]] == ["DELETING"]
    assert rek.describe_projects()["ProjectDescriptions"] == []
    assert [op for op, _ in emulator.calls][:3] == ["CreateProject", "CreateDataset", "CreateDataset"]


def test_disjoint_train_and_test_score_zero(aws):
    s3, rek = aws
    s3.put_object(Bucket=BUCKET, Key="only-c.manifest", Body=TEST[1])
    project, version = make_model(rek, test="only-c.manifest")
    described, _ = wait(describe_version(rek, project), [], {"TRAINING_COMPLETED"})
    assert described["EvaluationResult"]["F1Score"] == 0.0


def test_unwritable_output_fails_the_training(aws):
    _, rek = aws
    project, _ = make_model(rek, output={"S3Bucket": "no-such-bucket", "S3KeyPrefix": "out"})
    described, _ = wait(describe_version(rek, project), [], {"TRAINING_COMPLETED", "TRAINING_FAILED"})
    assert described["Status"] == "TRAINING_FAILED"
    assert described["StatusMessage"].startswith("ERROR_CANNOT_WRITE_OUTPUT_S3_BUCKET: Unable to write to output S3 bucket")
    assert "s3://no-such-bucket/out/EvaluationSummary-clothes-v1.json" in described["StatusMessage"]


def test_detect_checks_the_image(aws):
    _, rek = aws
    project, version = make_model(rek)
    wait(describe_version(rek, project), [], {"TRAINING_COMPLETED"})
    rek.start_project_version(ProjectVersionArn=version, MinInferenceUnits=1)
    wait(describe_version(rek, project), [], {"RUNNING"})
    for image_arg, code in (
        ({"Bytes": b"GIF89a" + b"\0" * 64}, "InvalidImageFormatException"),
        ({"Bytes": IMG_A + b"\0" * (4 * 1024 * 1024)}, "ImageTooLargeException"),
        ({"S3Object": {"Bucket": BUCKET, "Name": "img/missing.png"}}, "InvalidS3ObjectException"),
    ):
        with pytest.raises(ClientError) as excinfo:
            rek.detect_custom_labels(ProjectVersionArn=version, Image=image_arg)
        assert error_code(excinfo) == code


def test_lifecycle_errors(aws):
    _, rek = aws
    project = rek.create_project(ProjectName="p")["ProjectArn"]
    with pytest.raises(ClientError) as excinfo:
        rek.create_project(ProjectName="p")
    assert error_code(excinfo) == "ResourceInUseException"

    with pytest.raises(ClientError) as excinfo:
        rek.create_project_version(ProjectArn=project, VersionName="v1", OutputConfig=OUTPUT)
    assert error_code(excinfo) == "InvalidParameterException"
    assert "no TRAIN dataset" in excinfo.value.response["Error"]["Message"]

    rek.create_dataset(ProjectArn=project, DatasetType="TRAIN", DatasetSource=source("train.manifest"))
    with pytest.raises(ClientError) as excinfo:
        rek.create_dataset(ProjectArn=project, DatasetType="TRAIN", DatasetSource=source("test.manifest"))
    assert error_code(excinfo) == "ResourceAlreadyExistsException"

    with pytest.raises(ClientError) as excinfo:
        rek.describe_dataset(DatasetArn=project.rsplit("/", 1)[0] + "/dataset/test/1")
    assert error_code(excinfo) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as excinfo:  # not an ARN of a dataset at all: the model's pattern refuses it
        rek.describe_dataset(DatasetArn=project + "/dataset/test/1")
    assert error_code(excinfo) == "InvalidParameterException" and "DatasetArn" in excinfo.value.response["Error"]["Message"]


def test_in_progress_dataset_blocks_training_and_deletion(aws, emulator):
    _, rek = aws
    emulator.settings(dataset_ticks=3)
    project = rek.create_project(ProjectName="p")["ProjectArn"]
    arns = [rek.create_dataset(ProjectArn=project, DatasetType=k, DatasetSource=source("train.manifest"))["DatasetArn"] for k in ("TRAIN", "TEST")]
    with pytest.raises(ClientError) as excinfo:
        rek.create_project_version(ProjectArn=project, VersionName="v1", OutputConfig=OUTPUT)
    assert error_code(excinfo) == "ResourceInUseException"
    with pytest.raises(ClientError) as excinfo:
        rek.delete_dataset(DatasetArn=arns[0])
    assert error_code(excinfo) == "ResourceInUseException"
    _, seen = wait(lambda: rek.describe_dataset(DatasetArn=arns[0]), ["DatasetDescription"], {"CREATE_COMPLETE"})
    assert seen == ["CREATE_IN_PROGRESS"] * 3 + ["CREATE_COMPLETE"]
    rek.delete_dataset(DatasetArn=arns[0])
    # Deleting is asynchronous: the dataset keeps its place until it is gone.
    datasets = rek.describe_projects()["ProjectDescriptions"][0]["Datasets"]
    assert [(d["DatasetType"], d["Status"]) for d in datasets] == [("TRAIN", "DELETE_IN_PROGRESS"), ("TEST", "CREATE_IN_PROGRESS")]
    with pytest.raises(ClientError) as excinfo:
        rek.create_dataset(ProjectArn=project, DatasetType="TRAIN", DatasetSource=source("train.manifest"))
    assert error_code(excinfo) == "ResourceAlreadyExistsException" and "being deleted" in excinfo.value.response["Error"]["Message"]
    assert [d["DatasetType"] for d in rek.describe_projects()["ProjectDescriptions"][0]["Datasets"]] == ["TEST"]
    with pytest.raises(ClientError) as excinfo:
        rek.describe_dataset(DatasetArn=arns[0])
    assert error_code(excinfo) == "ResourceNotFoundException"


def test_bad_manifests_fail_the_dataset_with_a_message(aws):
    s3, rek = aws
    s3.put_object(Bucket=BUCKET, Key="junk.manifest", Body=b'not json\n{"source-ref": "s3://cl-data/img/none.png"}\n')
    missing_image = TRAIN[1].replace("img/b.jpg", "img/gone.jpg")
    s3.put_object(Bucket=BUCKET, Key="mixed.manifest", Body=f"{TRAIN[0]}\n{missing_image}\n{{}}\n")
    project = rek.create_project(ProjectName="p")["ProjectArn"]
    junk = rek.create_dataset(ProjectArn=project, DatasetType="TRAIN", DatasetSource=source("junk.manifest"))["DatasetArn"]
    described, _ = wait(lambda: rek.describe_dataset(DatasetArn=junk), ["DatasetDescription"], {"CREATE_COMPLETE", "CREATE_FAILED"})
    assert (described["Status"], described["StatusMessageCode"]) == ("CREATE_FAILED", "CLIENT_ERROR")
    assert "no valid line" in described["StatusMessage"] and "line 1" in described["StatusMessage"]

    mixed = rek.create_dataset(ProjectArn=project, DatasetType="TEST", DatasetSource=source("mixed.manifest"))["DatasetArn"]
    described, _ = wait(lambda: rek.describe_dataset(DatasetArn=mixed), ["DatasetDescription"], {"CREATE_COMPLETE", "CREATE_FAILED"})
    assert described["Status"] == "CREATE_COMPLETE"
    assert described["DatasetStats"] == {"LabeledEntries": 1, "TotalEntries": 3, "TotalLabels": 2, "ErrorEntries": 2}

    other = rek.create_project(ProjectName="q")["ProjectArn"]
    absent = rek.create_dataset(ProjectArn=other, DatasetType="TRAIN", DatasetSource=source("nowhere.manifest"))["DatasetArn"]
    described, _ = wait(lambda: rek.describe_dataset(DatasetArn=absent), ["DatasetDescription"], {"CREATE_COMPLETE", "CREATE_FAILED"})
    assert described["Status"] == "CREATE_FAILED" and "could not be read" in described["StatusMessage"]


def test_manifest_line_rules():
    # Each broken variant of a good line is an error entry, not a crash.
    good = json.loads(TRAIN[0])
    meta = "bounding-box-metadata"
    variants = [
        {**good, "source-ref": "https://example.com/a.png"},
        {**good, "bounding-box": {**good["bounding-box"], "image_size": []}},
        {**good, "bounding-box": {**good["bounding-box"], "image_size": [{"width": 10, "height": 10, "depth": 3}]}},
        {**good, meta: {**good[meta], "objects": [{"confidence": 1}]}},
        {**good, meta: {**good[meta], "class-map": {}}},
        {**good, meta: {**good[meta], "type": "groundtruth/semantic-segmentation"}},
        {k: v for k, v in good.items() if k != meta},
    ]
    with mock_aws():
        install()
        s3 = boto3.client("s3", region_name="us-east-1")
        put_data(s3, train=[TRAIN[0]] + [json.dumps(v) for v in variants])
        rek = boto3.client("rekognition", region_name="us-east-1")
        project = rek.create_project(ProjectName="p")["ProjectArn"]
        arn = rek.create_dataset(ProjectArn=project, DatasetType="TRAIN", DatasetSource=source("train.manifest"))["DatasetArn"]
        described, _ = wait(lambda: rek.describe_dataset(DatasetArn=arn), ["DatasetDescription"], {"CREATE_COMPLETE"})
        assert described["DatasetStats"]["ErrorEntries"] == len(variants)
        assert described["DatasetStats"]["LabeledEntries"] == 1


def test_injected_errors_then_success(aws, emulator):
    _, rek = aws
    project, _ = make_model(rek)
    emulator.inject_error("DescribeProjectVersions", "ThrottlingException", "Slow down", times=2)
    for _ in range(2):
        with pytest.raises(ClientError) as excinfo:
            rek.describe_project_versions(ProjectArn=project)
        assert (error_code(excinfo), excinfo.value.response["Error"]["Message"]) == ("ThrottlingException", "Slow down")
        assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert rek.describe_project_versions(ProjectArn=project)["ProjectVersionDescriptions"][0]["Status"] == "TRAINING_COMPLETED"
    assert [op for op, _ in emulator.calls][-3:] == ["DescribeProjectVersions"] * 3

    emulator.inject_error("CreateProject", "InternalServerError")
    with pytest.raises(ClientError) as excinfo:
        rek.create_project(ProjectName="later")
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert emulator.calls[-1] == ("CreateProject", {"ProjectName": "later"})
    # A retrying client (boto3's default) rides over a single throttle.
    emulator.inject_error("CreateProject", "ThrottlingException")
    assert boto3.client("rekognition", region_name="us-east-1").create_project(ProjectName="later")["ProjectArn"]
    with pytest.raises(ValueError):
        emulator.inject_error("ListDatasetEntries", "ThrottlingException")


def test_fail_next_training_and_next_dataset(aws, emulator):
    _, rek = aws
    emulator.fail_next_training("ERROR_SERVICE_UNAVAILABLE: injected")
    project, version = make_model(rek)
    described, _ = wait(describe_version(rek, project), [], {"TRAINING_COMPLETED", "TRAINING_FAILED"})
    assert (described["Status"], described["StatusMessage"]) == ("TRAINING_FAILED", "ERROR_SERVICE_UNAVAILABLE: injected")
    assert "EvaluationResult" not in described
    with pytest.raises(ClientError) as excinfo:
        rek.start_project_version(ProjectVersionArn=version, MinInferenceUnits=1)
    assert error_code(excinfo) == "InvalidParameterException"
    # Only the next one: a second version trains.
    rek.create_project_version(ProjectArn=project, VersionName="v2", OutputConfig=OUTPUT)
    assert wait(describe_version(rek, project, "v2"), [], {"TRAINING_COMPLETED", "TRAINING_FAILED"})[0]["Status"] == "TRAINING_COMPLETED"
    with pytest.raises(ClientError) as excinfo:
        rek.create_project_version(ProjectArn=project, VersionName="v2", OutputConfig=OUTPUT)
    assert error_code(excinfo) == "ResourceInUseException"

    emulator.fail_next_dataset("injected dataset failure")
    other = rek.create_project(ProjectName="other")["ProjectArn"]
    arn = rek.create_dataset(ProjectArn=other, DatasetType="TRAIN", DatasetSource=source("train.manifest"))["DatasetArn"]
    described = rek.describe_dataset(DatasetArn=arn)["DatasetDescription"]
    assert (described["Status"], described["StatusMessage"]) == ("CREATE_FAILED", "injected dataset failure")


def test_state_is_cleared_by_moto_reset(emulator):
    for _ in range(2):
        with mock_aws():
            rek = boto3.client("rekognition", region_name="us-east-1")
            assert rek.describe_projects()["ProjectDescriptions"] == []
            rek.create_project(ProjectName="p")
    assert install() is emulator  # idempotent: the same controller, the same handlers
    assert [op for op, _ in emulator.calls] == ["DescribeProjects", "CreateProject"] * 2


def test_step_functions_aws_sdk_tasks_reach_the_emulator(emulator):
    # moto's interpreter turns boto3 datetimes into state output it cannot serialise, so the
    # Describe task keeps only what it needs (a state machine should anyway).
    definition = {"StartAt": "Create", "States": {
        "Create": {"Type": "Task", "Resource": "arn:aws:states:::aws-sdk:rekognition:createProject",
                   "Parameters": {"ProjectName": "sfn"}, "ResultPath": "$.created", "Next": "Describe"},
        "Describe": {"Type": "Task", "Resource": "arn:aws:states:::aws-sdk:rekognition:describeProjects",
                     "Parameters": {"ProjectNames": ["sfn"]}, "ResultSelector": {"Count.$": "States.ArrayLength($.ProjectDescriptions)"},
                     "ResultPath": "$.described", "Next": "Again"},
        "Again": {"Type": "Task", "Resource": "arn:aws:states:::aws-sdk:rekognition:createProject",
                  "Parameters": {"ProjectName": "sfn"}, "End": True,
                  "Catch": [{"ErrorEquals": ["Rekognition.ResourceInUseException"], "ResultPath": "$.error", "Next": "Caught"}]},
        "Caught": {"Type": "Pass", "End": True},
    }}  # fmt: skip
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        sfn = boto3.client("stepfunctions", region_name="us-east-1")
        trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "states.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
        role = boto3.client("iam", region_name="us-east-1").create_role(RoleName="sfn", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
        machine = sfn.create_state_machine(name="m", definition=json.dumps(definition), roleArn=role)["stateMachineArn"]
        execution = sfn.start_execution(stateMachineArn=machine, input="{}")["executionArn"]
        deadline = time.monotonic() + 30  # a loaded machine runs moto's interpreter slowly
        while time.monotonic() < deadline:
            described = sfn.describe_execution(executionArn=execution)
            if described["status"] != "RUNNING":
                break
            time.sleep(0.05)
        assert described["status"] == "SUCCEEDED", described
        output = json.loads(described["output"])
    assert ":project/sfn/" in output["created"]["ProjectArn"]
    assert output["described"] == {"Count": 1}
    assert output["error"]["Error"] == "Rekognition.ResourceInUseException"
    assert [op for op, _ in emulator.calls] == ["CreateProject", "DescribeProjects", "CreateProject"]


def test_through_a_threaded_moto_server(emulator):
    install()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        kwargs = {"region_name": "us-east-1", "endpoint_url": endpoint, "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
        put_data(boto3.client("s3", **kwargs))
        rek = boto3.client("rekognition", config=NO_RETRY, **kwargs)
        project, version = make_model(rek)
        wait(describe_version(rek, project), [], {"TRAINING_COMPLETED"})
        rek.start_project_version(ProjectVersionArn=version, MinInferenceUnits=1)
        wait(describe_version(rek, project), [], {"RUNNING"})
        labels = rek.detect_custom_labels(ProjectVersionArn=version, Image={"Bytes": IMG_B})["CustomLabels"]
        assert [x["Name"] for x in labels] == ["shorts"]
        emulator.inject_error("DetectCustomLabels", "InternalServerError")
        with pytest.raises(ClientError) as excinfo:
            rek.detect_custom_labels(ProjectVersionArn=version, Image={"Bytes": IMG_B})
        assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
        with pytest.raises(ValueError, match="not an error of Rekognition's DetectCustomLabels"):
            emulator.inject_error("DetectCustomLabels", "ServiceUnavailableException")  # no such error in the model
    finally:
        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"))
        server.stop()


# -- what the service refuses ---------------------------------------------------------------------
def test_requests_are_checked_against_the_service_model(aws, emulator):
    """What botocore's client lets through (it checks types and minimum lengths only) the
    service still refuses: patterns, enums, maximum lengths and ranges."""
    _, rek = aws
    for call, needle in (
        (lambda: rek.create_project(ProjectName="has spaces"), "ProjectName"),
        (lambda: rek.create_project(ProjectName="x" * 256), "ProjectName"),
        (lambda: rek.create_project(ProjectName="p", Tags={"aws:reserved": "x"}), "reserved prefix"),
        (lambda: rek.describe_projects(MaxResults=101), "MaxResults"),
        (lambda: rek.describe_dataset(DatasetArn="arn:aws:rekognition:us-east-1:123456789012:project/p/1"), "DatasetArn"),
    ):
        with pytest.raises(ClientError) as excinfo:
            call()
        assert error_code(excinfo) == "InvalidParameterException" and needle in excinfo.value.response["Error"]["Message"]
    # The same request through Step Functions (no client-side validation) meets the same check.
    with pytest.raises(ClientError) as excinfo:
        boto3.client("rekognition", region_name="us-east-1", config=Config(parameter_validation=False)).create_dataset(
            ProjectArn="arn:aws:rekognition:us-east-1:123456789012:project/p/1", DatasetType="VALIDATION")
    assert error_code(excinfo) == "InvalidParameterException" and "DatasetType: 'VALIDATION' is not one of TRAIN, TEST" in excinfo.value.response["Error"]["Message"]


def test_only_modelled_errors_can_be_injected(emulator):
    with pytest.raises(ValueError, match="not an error of Rekognition's CreateProject"):
        emulator.inject_error("CreateProject", "ResourceAlreadyExistsException")  # CreateProject says ResourceInUseException
    emulator.inject_error("CreateDataset", "ResourceAlreadyExistsException")


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def test_an_image_that_does_not_decode_is_invalid(aws):
    """A header that probes fine over a truncated body: Rekognition cannot decode it."""
    s3, rek = aws
    broken_png = truncated(image((300, 200), (10, 200, 90)))
    s3.put_object(Bucket=BUCKET, Key="img/cut.png", Body=broken_png)
    cut_line = line("img/cut.png", (300, 200), [("skirt", Box("skirt", 10, 10, 100, 100))])
    s3.put_object(Bucket=BUCKET, Key="cut.manifest", Body=f"{TRAIN[0]}\n{cut_line}\n")
    project = rek.create_project(ProjectName="p")["ProjectArn"]
    arn = rek.create_dataset(ProjectArn=project, DatasetType="TRAIN", DatasetSource=source("cut.manifest"))["DatasetArn"]
    described, _ = wait(lambda: rek.describe_dataset(DatasetArn=arn), ["DatasetDescription"], {"CREATE_COMPLETE", "CREATE_FAILED"})
    assert described["DatasetStats"]["ErrorEntries"] == 1 and described["DatasetStats"]["TotalEntries"] == 2

    project, version = make_model(rek, name="q")
    wait(describe_version(rek, project), [], {"TRAINING_COMPLETED"})
    rek.start_project_version(ProjectVersionArn=version, MinInferenceUnits=1)
    wait(describe_version(rek, project), [], {"RUNNING"})
    for data in (broken_png, truncated(IMG_B)):
        with pytest.raises(ClientError) as excinfo:
            rek.detect_custom_labels(ProjectVersionArn=version, Image={"Bytes": data})
        assert error_code(excinfo) == "InvalidImageFormatException"



def test_a_starting_model_cannot_be_stopped(aws, emulator):
    """The API reference stops "a running model"; the emulator takes the strict reading."""
    _, rek = aws
    emulator.settings(start_ticks=2)
    project, version = make_model(rek)
    wait(describe_version(rek, project), [], {"TRAINING_COMPLETED"})
    rek.start_project_version(ProjectVersionArn=version, MinInferenceUnits=1)
    with pytest.raises(ClientError) as excinfo:
        rek.stop_project_version(ProjectVersionArn=version)
    assert error_code(excinfo) == "ResourceInUseException"
    wait(describe_version(rek, project), [], {"RUNNING"})
    assert rek.stop_project_version(ProjectVersionArn=version)["Status"] == "STOPPING"


def test_describe_answers_can_lack_their_optional_members(aws, emulator):
    _, rek = aws
    emulator.fail_next_dataset("ERROR_MANIFEST_TOO_FEW_LABELS: too few labels")
    project = rek.create_project(ProjectName="p")["ProjectArn"]
    arn = rek.create_dataset(ProjectArn=project, DatasetType="TRAIN", DatasetSource=source("train.manifest"))["DatasetArn"]
    emulator.strip("DescribeDataset", "DatasetDescription.StatusMessage", times=1)
    assert "StatusMessage" not in rek.describe_dataset(DatasetArn=arn)["DatasetDescription"]
    assert rek.describe_dataset(DatasetArn=arn)["DatasetDescription"]["StatusMessage"].startswith("ERROR_MANIFEST_TOO_FEW_LABELS")
    emulator.strip("DescribeProjects", "ProjectDescriptions", times=1)
    assert rek.describe_projects()["ProjectDescriptions"] == []
    assert len(rek.describe_projects()["ProjectDescriptions"]) == 1


def test_reads_and_writes_are_the_callers(emulator):
    """With IAM enforced, a caller who may read the manifest but not the images gets the
    dataset's terminal error naming the action (the output side: tests/workflow)."""
    from fashion_pipeline_tools.local import authorization

    with mock_aws():
        rek = trainer_rekognition([
            {"Effect": "Allow", "Action": "rekognition:*", "Resource": "*"},
            {"Effect": "Allow", "Action": "s3:GetObject", "Resource": [f"arn:aws:s3:::{BUCKET}/train.manifest", f"arn:aws:s3:::{BUCKET}/test.manifest"]},
        ])
        with authorization.enforcing():
            project = rek.create_project(ProjectName="p")["ProjectArn"]
            arn = rek.create_dataset(ProjectArn=project, DatasetType="TRAIN", DatasetSource=source("train.manifest"))["DatasetArn"]
            described, _ = wait(lambda: rek.describe_dataset(DatasetArn=arn), ["DatasetDescription"], {"CREATE_COMPLETE", "CREATE_FAILED"})
        assert described["Status"] == "CREATE_FAILED"
        message = described["StatusMessage"]
        assert message.startswith("ERROR_INVALID_PERMISSIONS_IMAGES_S3_BUCKET")
        assert f"User: arn:aws:iam::123456789012:user/trainer is not authorized to perform: s3:GetObject on resource: arn:aws:s3:::{BUCKET}/img/" in message


def read_lines(s3, s3object):
    return s3.get_object(Bucket=s3object["Bucket"], Key=s3object["Name"])["Body"].read().decode().splitlines()


def test_training_writes_a_summary_and_manifest_snapshots_that_evaluation_reads(aws):
    """The files AWS writes after training, where DescribeProjectVersions names them, parse with
    fashion_pipeline.evaluation and add up to the F1 the service reports."""
    from fashion_pipeline.evaluation import FN, FP, TP, build_evaluation

    s3, rek = aws
    project, version = make_model(rek)
    described, _ = wait(describe_version(rek, project), [], {"TRAINING_COMPLETED"})
    (testing,) = described["TestingDataResult"]["Output"]["Assets"]
    (training,) = described["TrainingDataResult"]["Output"]["Assets"]
    assert testing["GroundTruthManifest"]["S3Object"] == {"Bucket": BUCKET, "Name": "output/clothes/v1/manifests/testing/output.manifest"}
    assert training["GroundTruthManifest"]["S3Object"]["Name"] == "output/clothes/v1/manifests/training/output.manifest"
    assert described["TestingDataResult"]["Output"]["AutoCreate"] is False
    assert "Validation" not in described["TestingDataResult"]  # the emulator writes no validation manifests

    snapshot = read_lines(s3, testing["GroundTruthManifest"]["S3Object"])
    first = json.loads(snapshot[0])  # image A: memorised, both predictions true positives
    assert first["source-ref"] == f"s3://{BUCKET}/img/a.png"
    meta = first["rekognition-custom-labels-evaluation-metadata"]
    assert meta["job-name"] == "rekognition-custom-labels-evaluation-job" and meta["type"] == "groundtruth/object-detection"
    assert first["rekognition-custom-labels-evaluation"]["image_size"] == [{"width": 200, "depth": 3, "height": 100}]
    assert [o["confidence"] for o in meta["objects"]] == [0.99, 0.99]
    assert meta["objects"][0]["rekognition-custom-labels-evaluation-details"] == {
        "version": 1, "ground-truth-labelling-jobs": ["rekognition-custom-labels-training-job"],
        "is-true-positive": True, "is-true-negative": False, "is-false-positive": False, "is-false-negative": False,
        "is-present-in-ground-truth": True,
    }  # fmt: skip
    truth = first["rekognition-custom-labels-training-0"]["annotations"]
    classes = first["rekognition-custom-labels-training-0-metadata"]["class-map"]
    assert sorted((classes[str(a["class_id"])], a["left"], a["top"], a["width"], a["height"]) for a in truth) == [
        ("skirt", 120, 40, 60, 50), ("trousers", 20, 10, 100, 50),
    ]  # fmt: skip

    summary_object = described["EvaluationResult"]["Summary"]["S3Object"]
    summary = s3.get_object(Bucket=summary_object["Bucket"], Key=summary_object["Name"])["Body"].read()
    evaluation = build_evaluation("v1", summary=summary, snapshot=snapshot,
                                  train_manifest=read_lines(s3, training["GroundTruthManifest"]["S3Object"]))
    assert evaluation.overall.f1 == pytest.approx(described["EvaluationResult"]["F1Score"])
    from_manifest = build_evaluation("v1", snapshot=snapshot)  # the counts alone give the same numbers
    assert from_manifest.overall.f1 == pytest.approx(0.8) and from_manifest.overall.precision == pytest.approx(1.0)
    for name, metrics in evaluation.labels.items():
        computed = from_manifest.labels.get(name)
        if computed is not None:
            assert (computed.precision, computed.recall, computed.f1) == pytest.approx((metrics.precision, metrics.recall, metrics.f1)), name
    assert (from_manifest.labels["trousers"].tp, from_manifest.labels["trousers"].fn) == (1, 1)
    image_a, image_c = evaluation.images
    assert [p.outcome for p in image_a.predictions] == [TP, TP] and [t.outcome for t in image_a.truths] == [TP, TP]
    assert image_c.predictions == [] and [t.outcome for t in image_c.truths] == [FN]
    assert evaluation.distribution["train"] == {"trousers": 1, "skirt": 1, "shorts": 1}
    assert evaluation.distribution["test"] == {"trousers": 2, "skirt": 1}
    assert FP not in {p.outcome for image in evaluation.images for p in image.predictions}


def test_a_misplaced_memory_is_a_false_positive_in_the_snapshot(aws):
    """The same image with a box moved: the memoriser's box misses it (IoU < 0.5), so the
    snapshot says false positive, the truth is missed, and the F1 agrees."""
    from fashion_pipeline.evaluation import FN, FP, build_evaluation

    s3, rek = aws
    moved = line("img/a.png", (200, 100), [("trousers", Box("trousers", 100, 50, 100, 50)), ("skirt", Box("skirt", 120, 40, 60, 50))])
    s3.put_object(Bucket=BUCKET, Key="moved.manifest", Body=moved + "\n")
    project, _ = make_model(rek, test="moved.manifest")
    described, _ = wait(describe_version(rek, project), [], {"TRAINING_COMPLETED"})
    snapshot = read_lines(s3, described["TestingDataResult"]["Output"]["Assets"][0]["GroundTruthManifest"]["S3Object"])
    evaluation = build_evaluation("v1", snapshot=snapshot)
    trousers = evaluation.labels["trousers"]
    assert (trousers.tp, trousers.fp, trousers.fn) == (0, 1, 1)
    assert evaluation.overall.f1 == pytest.approx(described["EvaluationResult"]["F1Score"]) == pytest.approx(0.5)
    (image,) = evaluation.images
    assert {(p.label, p.outcome) for p in image.predictions if p.outcome == FP} == {("trousers", FP)}
    assert {(t.label, t.outcome) for t in image.truths if t.outcome == FN} == {("trousers", FN)}


def test_training_output_is_written_as_the_caller(emulator):
    """A caller who may write the summary but not the snapshots: the training fails with the
    service's terminal error naming the snapshot's key."""
    from fashion_pipeline_tools.local import authorization

    with mock_aws():
        rek = trainer_rekognition([
            {"Effect": "Allow", "Action": "rekognition:*", "Resource": "*"},
            {"Effect": "Allow", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{BUCKET}/*"},
            {"Effect": "Allow", "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{BUCKET}/output/EvaluationSummary-*"},
        ])  # fmt: skip
        with authorization.enforcing():
            project, _ = make_model(rek)
            described, _ = wait(describe_version(rek, project), [], {"TRAINING_COMPLETED", "TRAINING_FAILED"})
        assert described["Status"] == "TRAINING_FAILED" and "EvaluationResult" not in described
        assert described["StatusMessage"].startswith("ERROR_CANNOT_WRITE_OUTPUT_S3_BUCKET")
        assert f"s3:PutObject on resource: arn:aws:s3:::{BUCKET}/output/clothes/v1/manifests/testing/output.manifest" in described["StatusMessage"]
