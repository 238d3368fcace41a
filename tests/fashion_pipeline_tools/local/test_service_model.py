"""service_model: requests, Step Functions Parameters and output paths against botocore's models (offline)."""

import datetime
import io

import pytest

from fashion_pipeline_tools.local.service_model import (
    UNCOMPILABLE_PATTERNS,
    ModelError,
    boto_parameters,
    Unknown,
    enum_of,
    modelled_errors,
    operation_model,
    output_member,
    service_errors,
    step_functions_error_name,
    validate_request,
    validate_step_functions_parameters,
)

PROJECT_ARN = "arn:aws:rekognition:us-east-1:123456789012:project/shop/1700000000000"
VERSION_ARN = "arn:aws:rekognition:us-east-1:123456789012:project/shop/version/v1/1700000000000"
S3_OBJECT = {"S3Object": {"Bucket": "bucket", "Name": "train.manifest"}}


def create_version(**overrides):
    params = {"ProjectArn": PROJECT_ARN, "VersionName": "v1", "OutputConfig": {"S3Bucket": "bucket", "S3KeyPrefix": "out/"}}
    return validate_request("rekognition", "CreateProjectVersion", params | overrides)


# -- operations ---------------------------------------------------------------------------------
def test_operations_are_found_by_pascal_snake_and_camel_case():
    model = operation_model("rekognition", "CreateProject")
    assert model.name == "CreateProject"
    assert operation_model("rekognition", "create_project") is model
    assert operation_model("rekognition", "createProject") is model
    assert operation_model("states", "StartExecution").service_model.service_name == "stepfunctions"


def test_unknown_services_and_operations_are_named():
    with pytest.raises(ModelError, match=r"^rekognition has no operation 'CreatProject' \(did you mean CreateProject,"):
        operation_model("rekognition", "CreatProject")
    with pytest.raises(ModelError, match=r"^unknown service 'rekognitoin'$"):
        operation_model("rekognitoin", "CreateProject")


def test_enum_of():
    assert enum_of("rekognition", "DatasetType") == ("TRAIN", "TEST")
    with pytest.raises(ModelError, match="'ProjectName' is a string, not an enum"):
        enum_of("rekognition", "ProjectName")
    with pytest.raises(ModelError, match="no shape 'DataSetType'"):
        enum_of("rekognition", "DataSetType")


# -- requests: strings, enums, required and unknown members -------------------------------------
def test_create_project_name_pattern():
    assert validate_request("rekognition", "CreateProject", {"ProjectName": "shop_v1.2-a"}) == []
    assert validate_request("rekognition", "CreateProject", {"ProjectName": "a b"}) == [
        r"ProjectName: 'a b' does not match pattern [a-zA-Z0-9_.\-]+"]


def test_create_dataset_enum_required_and_unknown_members():
    assert validate_request("rekognition", "CreateDataset", {
        "ProjectArn": PROJECT_ARN, "DatasetType": "TEST", "DatasetSource": {"GroundTruthManifest": S3_OBJECT}}) == []
    assert validate_request("rekognition", "CreateDataset", {"DatasetType": "FOO", "Kind": "TRAIN"}) == [
        "Kind: unknown member of CreateDatasetRequest (members: DatasetSource, DatasetType, ProjectArn, Tags)",
        "ProjectArn: required member of CreateDatasetRequest missing",
        "DatasetType: 'FOO' is not one of TRAIN, TEST",
    ]


def test_nested_unknown_and_required_members():
    source = {"GroundTruthManifest": {"S3Object": {"Bucket": "bucket", "Key": "train.manifest"}}}
    assert validate_request("rekognition", "CreateDataset", {"ProjectArn": PROJECT_ARN, "DatasetType": "TRAIN", "DatasetSource": source}) == [
        "DatasetSource.GroundTruthManifest.S3Object.Key: unknown member of S3Object (members: Bucket, Name, Version)"]
    assert validate_request("dynamodb", "RestoreTableToPointInTime", {
        "TargetTableName": "restored", "ProvisionedThroughputOverride": {"ReadCapacityUnits": 0}}) == [
        "ProvisionedThroughputOverride.WriteCapacityUnits: required member of ProvisionedThroughput missing",
        "ProvisionedThroughputOverride.ReadCapacityUnits: 0 is less than the minimum 1",
    ]


def test_create_project_version_name_length_and_pattern():
    assert create_version() == []
    assert create_version(VersionName="v" * 256) == ["VersionName: 256 characters, at most 255"]
    assert create_version(VersionName="") == ["VersionName: 0 characters, at least 1", "VersionName: '' does not match pattern [a-zA-Z0-9_.\\-]+"]
    assert create_version(VersionName="v/1") == ["VersionName: 'v/1' does not match pattern [a-zA-Z0-9_.\\-]+"]
    # \d in a model pattern is Java's, ASCII only: Arabic-Indic digits are no account id.
    [error] = create_version(ProjectArn=PROJECT_ARN.replace("123456789012", "\u0661" * 12))
    assert error.startswith("ProjectArn: 'arn:aws:rekognition:us-east-1:\u0661") and "does not match pattern" in error


def test_tags_map_size_keys_and_values():
    assert create_version(Tags={f"k{i}": "v" for i in range(200)}) == []
    assert create_version(Tags={f"k{i}": "v" for i in range(201)}) == ["Tags: 201 entries, at most 200"]
    long_key = "k" * 129
    assert create_version(Tags={long_key: "v", "k": "v" * 257}) == [
        f"Tags key {long_key!r}: 129 characters, at most 128", "Tags['k']: 257 characters, at most 256"]
    assert create_version(Tags="team=a") == ["Tags: expected map, got str 'team=a'"]


def test_java_only_patterns_are_skipped_and_recorded():
    # TagKey's pattern uses \p{L}, which Python's re cannot compile: "aws:" keys are not refused here.
    assert create_version(Tags={"aws:reserved": "v"}) == []
    assert r"^(?!aws:)[\p{L}\p{Z}\p{N}_.:/=+\-@]*$" in UNCOMPILABLE_PATTERNS
    assert r"[a-zA-Z0-9_.\-]+" not in UNCOMPILABLE_PATTERNS


def test_ssm_put_parameter():
    assert validate_request("ssm", "PutParameter", {"Name": "/pipeline/model", "Value": "{}", "Type": "String", "Overwrite": True}) == []
    assert validate_request("ssm", "PutParameter", {"Name": "/p" * 1025, "Value": 5, "Type": "Text", "Overwrite": "yes"}) == [
        "Name: 2050 characters, at most 2048",
        "Value: expected string, got int <sensitive>",  # the model marks the value sensitive: never echoed
        "Type: 'Text' is not one of String, StringList, SecureString",
        "Overwrite: expected boolean, got str 'yes'",
    ]


# -- requests: numbers, lists, blobs, timestamps ------------------------------------------------
def test_start_project_version_inference_units():
    assert validate_request("rekognition", "StartProjectVersion", {"ProjectVersionArn": VERSION_ARN, "MinInferenceUnits": 1}) == []
    assert validate_request("rekognition", "StartProjectVersion", {
        "ProjectVersionArn": VERSION_ARN, "MinInferenceUnits": 0, "MaxInferenceUnits": True}) == [
        "MinInferenceUnits: 0 is less than the minimum 1",
        "MaxInferenceUnits: expected integer, got bool True",  # bool is an int in Python, not in the API
    ]


def test_max_results_ranges_and_lists():
    assert validate_request("rekognition", "DescribeProjects", {"MaxResults": 100, "ProjectNames": ["shop"]}) == []
    assert validate_request("rekognition", "DescribeProjects", {"MaxResults": 101, "ProjectNames": []}) == [
        "MaxResults: 101 is greater than the maximum 100", "ProjectNames: 0 items, at least 1"]
    assert validate_request("rekognition", "DescribeProjects", {"MaxResults": 0, "ProjectNames": ["a", 5] + ["b"] * 9}) == [
        "MaxResults: 0 is less than the minimum 1", "ProjectNames: 11 items, at most 10", "ProjectNames[1]: expected string, got int 5"]
    assert validate_request("rekognition", "DescribeProjects", {"ProjectNames": "shop"}) == ["ProjectNames: expected list, got str 'shop'"]


def test_detect_custom_labels_image_and_ranges():
    detect = {"ProjectVersionArn": VERSION_ARN, "MaxResults": 0, "MinConfidence": 50}
    for image in (S3_OBJECT, {"Bytes": b"\xff\xd8"}, {"Bytes": bytearray(b"x")}, {"Bytes": "x"}, {"Bytes": io.BytesIO(b"x")}):
        assert validate_request("rekognition", "DetectCustomLabels", detect | {"Image": image}) == []
    assert validate_request("rekognition", "DetectCustomLabels", {
        "ProjectVersionArn": VERSION_ARN, "Image": {"Bytes": b"", "S3Object": {"Bucket": "b"}}, "MaxResults": -1, "MinConfidence": 100.5}) == [
        "Image.Bytes: 0 bytes, at least 1",
        "Image.S3Object.Bucket: 1 characters, at least 3",
        "MaxResults: -1 is less than the minimum 0",
        "MinConfidence: 100.5 is greater than the maximum 100",
    ]
    assert validate_request("rekognition", "DetectCustomLabels", detect | {"Image": {"Bytes": 5}, "MinConfidence": "50"}) == [
        "MinConfidence: expected float, got str '50'", "Image.Bytes: expected blob, got int 5"]
    assert validate_request("rekognition", "DetectCustomLabels", detect | {"Image": "s3://bucket/a.jpg"}) == [
        "Image: expected structure, got str 's3://bucket/a.jpg'"]
    # The model does not mark Image a union: "one of Bytes or S3Object" is the service's rule, not the model's.
    assert validate_request("rekognition", "DetectCustomLabels", detect | {"Image": {}}) == []


def test_timestamps():
    restore = {"TargetTableName": "restored"}
    for when in (datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC), "2024-01-01T00:00:00Z", 1704067200):
        assert validate_request("dynamodb", "RestoreTableToPointInTime", restore | {"RestoreDateTime": when}) == []
    assert validate_request("dynamodb", "RestoreTableToPointInTime", restore | {"RestoreDateTime": "yesterday"}) == [
        "RestoreDateTime: expected timestamp, got str 'yesterday'"]
    assert validate_request("dynamodb", "RestoreTableToPointInTime", restore | {"RestoreDateTime": True}) == [
        "RestoreDateTime: expected timestamp, got bool True"]


# -- requests: unions, DynamoDB attribute values, documents -------------------------------------
def test_dynamodb_put_item_attribute_values():
    item = {"pk": {"S": "run#1"}, "count": {"N": "3"}, "done": {"BOOL": False}, "tags": {"SS": ["a"]}, "meta": {"M": {"x": {"NULL": True}}}}
    assert validate_request("dynamodb", "PutItem", {"TableName": "locks", "Item": item}) == []
    assert validate_request("dynamodb", "PutItem", {"TableName": "locks", "Item": {
        "done": {"BOOL": "yes"}, "pk": {"STRING": "x"}, "meta": {"M": {"x": {"L": "a"}}}}}) == [
        "Item['done'].BOOL: expected boolean, got str 'yes'",
        "Item['pk'].STRING: unknown member of AttributeValue (members: S, N, B, SS, NS, BS, M, L, NULL, BOOL)",
        "Item['meta'].M['x'].L: expected list, got str 'a'",
    ]
    # AttributeValue is not marked a union in botocore's model, so two types in one value pass.
    assert validate_request("dynamodb", "PutItem", {"TableName": "locks", "Item": {"pk": {"S": "a", "N": "1"}}}) == []


def test_unions_take_exactly_one_member():
    encryption = {"Bucket": "bucket", "Key": "key"}
    sse = {"SSEKMS": {"KMSKeyArn": "arn:aws:kms:us-east-1:123456789012:key/k"}}
    assert validate_request("s3", "UpdateObjectEncryption", encryption | {"ObjectEncryption": sse}) == []
    assert validate_request("s3", "UpdateObjectEncryption", encryption | {"ObjectEncryption": {}}) == [
        "ObjectEncryption: exactly one of SSEKMS must be set, got none"]
    connector = {"DisplayName": "c", "RoleArn": "arn:aws:iam::123456789012:role/r", "Configuration": {
        "AzureConfiguration": {"TenantId": Unknown(), "ApplicationId": Unknown()},
        "GcpConfiguration": {"WorkloadIdentityPoolProvider": Unknown(), "ServiceAccountEmail": Unknown()}}}
    assert validate_request("ssm", "CreateCloudConnector", connector) == [
        "Configuration: exactly one of AzureConfiguration, GcpConfiguration must be set, got AzureConfiguration, GcpConfiguration"]


def test_documents_take_anything():
    assert validate_request("inspector-scan", "ScanSbom", {"sbom": {"components": [1, {"x": None}], "ok": True}}) == []


def test_unknown_placeholders_only_need_their_member_to_exist():
    assert validate_request("rekognition", "StartProjectVersion", {"ProjectVersionArn": Unknown(), "MinInferenceUnits": Unknown(kind="integer")}) == []
    assert validate_request("rekognition", "CreateProject", {"ProjectName": Unknown(), "Name": Unknown()}) == [
        "Name: unknown member of CreateProjectRequest (members: ProjectName, Feature, AutoUpdate, Tags)"]


def test_operations_without_input_or_members():
    assert validate_request("acm", "GetAccountConfiguration", {}) == []
    assert validate_request("acm", "GetAccountConfiguration", {"Region": "x"}) == [
        "(input): GetAccountConfiguration takes no parameters, got Region"]
    assert validate_request("dynamodb", "DescribeEndpoints", {"Region": "x"}) == [
        "Region: unknown member of DescribeEndpointsRequest (members: none)"]


# -- Step Functions Parameters ------------------------------------------------------------------
def test_step_functions_parameters_of_the_training_workflow():
    # As infrastructure/training.py writes them.
    assert validate_step_functions_parameters("rekognition", "createDataset", {
        "ProjectArn.$": "$.project.arn", "DatasetType": "TRAIN", "DatasetSource": {"GroundTruthManifest": {
            "S3Object": {"Bucket.$": "$.run.artifacts_bucket", "Name.$": "$.assembly.train_manifest"}}}}) == []
    assert validate_step_functions_parameters("rekognition", "createProjectVersion", {
        "ProjectArn.$": "$.project.arn", "VersionName.$": "$.run.version_name",
        "OutputConfig": {"S3Bucket.$": "$.run.artifacts_bucket", "S3KeyPrefix.$": "States.Format('{}output/', $.run.prefix)"},
        "Tags": {"fashion-pipeline:dataset.$": "$.run.dataset"}}) == []
    assert validate_step_functions_parameters("rekognition", "describeProjects", {"ProjectNames.$": "States.Array($.run.project_name)"}) == []
    assert validate_step_functions_parameters("ssm", "putParameter", {
        "Name": "/fashion/model", "Type": "String", "Overwrite": True, "Value.$": "States.JsonToString($.pointer)"}) == []


def test_step_functions_parameters_are_checked_like_requests():
    assert validate_step_functions_parameters("rekognition", "createDataset", {
        "ProjectArn.$": "$.project.arn", "DatasetType": "VALIDATION",
        "DatasetSource": {"GroundTruthManifest": {"S3Object": {"Bucket.$": "$.bucket", "Key.$": "$.key"}}}}) == [
        "DatasetType: 'VALIDATION' is not one of TRAIN, TEST",
        "DatasetSource.GroundTruthManifest.S3Object.Key: unknown member of S3Object (members: Bucket, Name, Version)",
    ]
    assert validate_step_functions_parameters("rekognition", "startProjectVersion", {"ProjectVersionArn.$": "$.model.arn"}) == [
        "MinInferenceUnits: required member of StartProjectVersionRequest missing"]
    assert validate_step_functions_parameters("rekognition", "createProject", {"ProjectName.$": 5}) == [
        "ProjectName.$: a JSONPath or intrinsic function string, got 5",
        "ProjectName: required member of CreateProjectRequest missing",
    ]


def test_step_functions_spelling_of_services_actions_and_members():
    assert validate_step_functions_parameters("sfn", "startExecution", {"StateMachineArn.$": "$.arn", "Input.$": "States.JsonToString($)"}) == []
    assert validate_step_functions_parameters("eventbridge", "putEvents", {"Entries": [
        {"Source": "fashion", "DetailType": "run", "Detail.$": "States.JsonToString($)", "Topic": "x"}]}) == [
        "Entries[0].Topic: unknown member of PutEventsRequestEntry (members: Time, Source, Resources, DetailType, Detail, EventBusName, TraceHeader)"]
    with pytest.raises(ModelError, match=r"camelCase: 'createProject', not 'CreateProject'"):
        validate_step_functions_parameters("rekognition", "CreateProject", {"ProjectName": "p"})
    with pytest.raises(ModelError, match=r"camelCase: 'createProject', not 'create_project'"):
        validate_step_functions_parameters("rekognition", "create_project", {"ProjectName": "p"})
    # PascalCase even where the API is camelCase, and as the Java SDK spells acronyms.
    assert validate_step_functions_parameters("apigateway", "getRestApi", {"RestApiId": "abc"}) == []
    assert validate_step_functions_parameters("apigateway", "getRestApi", {"restApiId": "abc"}) == [
        "restApiId: Step Functions spells this member RestApiId"]
    item = {"a": {"Bool": True}, "b": {"Nul": True}, "c": {"Ss.$": "$.names"}, "d": {"BOOL": True}}
    assert validate_step_functions_parameters("dynamodb", "putItem", {"TableName": "t", "Item": item}) == [
        "Item['d'].BOOL: Step Functions spells this member Bool"]


# -- outputs ------------------------------------------------------------------------------------
def test_output_member_of_describe_project_versions():
    info = output_member("rekognition", "DescribeProjectVersions", ["ProjectVersionDescriptions", 0, "Status"])
    assert (info.type_name, info.shape.name) == ("string", "ProjectVersionStatus")
    assert {"RUNNING", "TRAINING_COMPLETED", "TRAINING_FAILED", "FAILED"} <= set(info.enum)
    assert info.enum == enum_of("rekognition", "ProjectVersionStatus")
    assert info.optional_prefixes == [
        ("ProjectVersionDescriptions",), ("ProjectVersionDescriptions", 0), ("ProjectVersionDescriptions", 0, "Status")]


def test_output_member_optionality():
    info = output_member("rekognition", "DescribeDataset", ["DatasetDescription", "StatusMessage"])
    assert (info.type_name, info.enum) == ("string", ())
    assert info.optional_prefixes == [("DatasetDescription",), ("DatasetDescription", "StatusMessage")]
    assert output_member("rekognition", "GetMediaAnalysisJob", ["Status"]).optional_prefixes == []  # marked required
    tag = output_member("rekognition", "ListTagsForResource", ["Tags", "team"])
    assert (tag.type_name, tag.optional_prefixes) == ("string", [("Tags",), ("Tags", "team")])


def test_output_member_names_what_does_not_exist():
    with pytest.raises(ModelError) as raised:
        output_member("rekognition", "DescribeDataset", ["DatasetDescription", "Message"])
    assert str(raised.value) == ("DescribeDataset output has no DatasetDescription.Message: DatasetDescription has "
                                 "CreationTimestamp, LastUpdatedTimestamp, Status, StatusMessage, StatusMessageCode, DatasetStats")
    with pytest.raises(ModelError, match=r"ProjectVersionDescriptions\[0\]\.Status is a string \(ProjectVersionStatus\) and cannot be indexed by 'x'$"):
        output_member("rekognition", "DescribeProjectVersions", ["ProjectVersionDescriptions", 0, "Status", "x"])
    with pytest.raises(ModelError, match=r"ProjectVersionDescriptions is a list \(ProjectVersionDescriptions\) and cannot be indexed by 'Status'$"):
        output_member("rekognition", "DescribeProjectVersions", ["ProjectVersionDescriptions", "Status"])
    with pytest.raises(ModelError, match=r"^DeleteAlarms has no output$"):
        output_member("cloudwatch", "DeleteAlarms", [])


# -- errors -------------------------------------------------------------------------------------
def test_modelled_errors_of_create_project_version():
    assert modelled_errors("rekognition", "CreateProjectVersion") == {
        "AccessDeniedException", "InternalServerError", "InvalidParameterException", "LimitExceededException",
        "ProvisionedThroughputExceededException", "ResourceInUseException", "ResourceNotFoundException",
        "ServiceQuotaExceededException", "ThrottlingException"}


def test_service_errors_of_rekognition():
    errors = service_errors("rekognition")
    assert modelled_errors("rekognition", "CreateProjectVersion") <= errors
    assert {"InvalidManifestException", "ResourceNotReadyException"} <= errors
    assert "ServiceUnavailableException" not in errors
    assert "ProjectName" not in errors


def test_step_functions_error_names():
    assert step_functions_error_name("rekognition", "InternalServerError") == "Rekognition.InternalServerErrorException"
    assert step_functions_error_name("rekognition", "ResourceInUseException") == "Rekognition.ResourceInUseException"
    assert step_functions_error_name("ssm", "ParameterNotFound") == "Ssm.ParameterNotFoundException"
    assert step_functions_error_name("dynamodb", "ConditionalCheckFailedException") == "DynamoDb.ConditionalCheckFailedException"
    assert step_functions_error_name("sfn", "ExecutionAlreadyExists") == "Sfn.ExecutionAlreadyExistsException"
    assert step_functions_error_name("s3", "BucketAlreadyExists") == "S3.BucketAlreadyExistsException"
    assert step_functions_error_name("acm-pca", "ResourceNotFoundException") == "AcmPca.ResourceNotFoundException"
    assert step_functions_error_name("lambda", "EC2ThrottledException") == "Lambda.Ec2ThrottledException"
    with pytest.raises(ModelError, match=r"^'ServiceUnavailableException' is not an error of rekognition"):
        step_functions_error_name("rekognition", "ServiceUnavailableException")


def test_an_sdk_tasks_parameters_are_renamed_to_the_models_members_at_every_depth():
    states = {"TableName": "t", "Key": {"model": {"S": "m"}}, "UpdateExpression": "DELETE #l :l",
              "ExpressionAttributeValues": {":l": {"Ss": ["a", "b"]}, ":b": {"Bool": True}, ":n": {"Nul": True},
                                            ":m": {"M": {"x": {"Ns": ["1"]}}}, ":list": {"L": [{"Bs": [b"x"]}]}}}
    renamed = boto_parameters("dynamodb", "update_item", states)
    assert renamed["ExpressionAttributeValues"] == {":l": {"SS": ["a", "b"]}, ":b": {"BOOL": True}, ":n": {"NULL": True},
                                                     ":m": {"M": {"x": {"NS": ["1"]}}}, ":list": {"L": [{"BS": [b"x"]}]}}
    assert renamed["Key"] == {"model": {"S": "m"}} and renamed["TableName"] == "t"
    assert validate_request("dynamodb", "UpdateItem", renamed) == []
    # The same Parameters in the model's own spelling are what Step Functions refuses.
    assert validate_step_functions_parameters("dynamodb", "updateItem", renamed)
