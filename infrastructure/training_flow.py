"""The training workflow's definition: fragments -> manifests -> Custom Labels model -> running endpoint.

Lambda tasks do what needs logic (prepare, shard and assemble, evaluate, retire, finish);
every Rekognition, SSM, SNS and EventBridge call is a direct SDK integration.

Assembly scales out: a Distributed Map lists the dataset's fragments (an S3 ItemReader),
hands them to child Lambdas in batches (an ItemBatcher), each of which reads its fragments and
their reports and writes one shard under the run's prefix; one Lambda then merges the shards
into the manifests (``lambdas/workflow/assembly.py``). With one annotation object per image
that is two small GETs per image, which one Lambda could not do for DeepFashion2's 391k
training images within its 15 minutes. Three rules hold for
every state, and tests/infrastructure/test_workflow_contract.py checks them against
botocore's service models on the synthesized definition:

* No state reads a member the service model marks optional without a guard. A missing path
  fails a state with ``States.Runtime``, which ``Catch ["States.ALL"]`` does not catch, so the
  failure path (outcome.json, lease release, notification) would be skipped. SDK results are
  kept whole (no ResultSelector) and a Choice tests ``IsPresent`` before anything reads them.
* Every polling loop stops after a number of polls that the run's options bound, so that the
  longest run fits the 25,000 events an execution's history holds
  (``fashion_pipeline.training.WORKFLOW_HISTORY``), and every status of the polled resource
  other than the in-progress ones leaves the loop.
* Every task retries the service's transient errors (modelled names only) and every other
  error reaches one failure path that records the reason, frees the dataset and notifies.

Re-training: one Custom Labels project per dataset. A project holds one TRAIN and one TEST
dataset, so each run deletes the project's datasets, waits until they are gone (deletion is
asynchronous) and creates them from the new manifests; models trained earlier keep their own
copy of the data. Each run is a new model version; once it runs, the dataset's other running
versions are stopped unless the run keeps them (``keep_previous_model_running``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Callable

from aws_cdk import Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from fashion_pipeline.layout import FRAGMENTS_PREFIX, model_pointer_name
from fashion_pipeline.lifecycle import ModelPointer

EVENT_SOURCE = "fashion-pipeline"

# Transient errors worth retrying, by their modelled names. Step Functions names an SDK
# integration's error "<Service>.<ErrorShape>" ("Exception" appended when the shape's name
# lacks it), so only shapes of the service's model can ever match (the contract test checks).
TRANSIENT_REKOGNITION_ERRORS = [
    "Rekognition.ThrottlingException",
    "Rekognition.ProvisionedThroughputExceededException",
    "Rekognition.LimitExceededException",
    "Rekognition.InternalServerErrorException",
]
# DynamoDB's, as the aws-sdk integration names them ("DynamoDb.", service_model.step_functions_error_name).
TRANSIENT_DYNAMODB_ERRORS = [
    "DynamoDb.ProvisionedThroughputExceededException",
    "DynamoDb.ThrottlingException",
    "DynamoDb.RequestLimitExceededException",
    "DynamoDb.InternalServerErrorException",
]
TRANSIENT_LAMBDA_ERRORS = [
    "Lambda.TooManyRequestsException",
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
]
TRANSIENT_SSM_ERRORS = ["Ssm.InternalServerErrorException", "Ssm.TooManyUpdatesException"]

# Every state machine of the stack retries with these (training, reprocess, batch detection).
RETRY = {"interval": Duration.seconds(1), "backoff_rate": 2.0, "max_attempts": 6, "jitter_strategy": sfn.JitterType.FULL}
# Inside a polling loop a describe call retries a little, then counts as a poll without news.
POLL_RETRY = {"interval": Duration.seconds(2), "backoff_rate": 2.0, "max_attempts": 2, "jitter_strategy": sfn.JitterType.FULL}


@dataclass(frozen=True)
class FlowFunctions:
    prepare: lambda_.IFunction
    shard: lambda_.IFunction
    assemble: lambda_.IFunction
    evaluate: lambda_.IFunction
    retire: lambda_.IFunction
    finish: lambda_.IFunction
    report: lambda_.IFunction  # writes the run's evaluation report; its failure never fails the run


@dataclass(frozen=True)
class FlowAssembly:
    """How the fragments are read: from which bucket, how many per child, how many children at once."""

    artifacts_bucket: s3.IBucket
    batch_size: int  # fragments per child (the ItemBatcher's MaxItemsPerBatch)
    max_concurrency: int  # children at once (the Map's MaxConcurrency)


# A batch's input (its items and BatchInput) may hold at most 256 KiB ("Quotas related to
# Distributed Map": https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html);
# an item of the S3 listing is ~150 bytes plus its key (up to 1,024), so batches are capped by
# bytes too, with room left for the run in BatchInput.
MAX_BATCH_INPUT_BYTES = 200 * 1024
READ_FRAGMENTS_LABEL = "ReadFragments"  # the Map's runs are named after it


@dataclass(frozen=True)
class FlowGrants:
    """What the SDK tasks need beyond their own action, on exactly these resources."""

    project_arns: list[str]
    model_parameter_prefix: str  # each dataset's pointer is <prefix>/<dataset> (fashion_pipeline.layout.model_pointer_name)
    model_parameter_arns: list[str]
    training_data_reads: list[iam.PolicyStatement]  # Custom Labels reads the manifests and images as the caller
    training_output_writes: list[iam.PolicyStatement]  # ... and writes training output as the caller


# Paths into the run's state that more than one phase reads.
RUN = "$.run"
PROJECT_ARN = "$.project.arn"
EXISTING_PROJECT = "$.lookup.ProjectDescriptions[0]"
VERSION_ARN = "$.version.ProjectVersionArn"
TRAINED = "$.training.ProjectVersionDescriptions[0]"
DEPLOYED = "$.deployment.ProjectVersionDescriptions[0]"


@dataclass(frozen=True)
class Poll:
    """How often a polling loop asks (seconds, from the run's options) and how many times at most (the run's limits)."""

    wait_path: str
    limit_path: str


DATASET_POLL = Poll("$.run.options.start_poll_seconds", "$.run.limits.dataset_polls")
DELETION_POLL = Poll("$.run.options.start_poll_seconds", "$.run.limits.deletion_polls")
TRAINING_POLL = Poll("$.run.options.poll_seconds", "$.run.limits.training_polls")
MODEL_POLL = Poll("$.run.options.start_poll_seconds", "$.run.limits.model_polls")


@dataclass(frozen=True)
class Describe:
    """The SDK call a polling loop repeats; the loop builds it, as it catches its transient errors."""

    id: str
    action: str
    parameters: dict
    result_path: str
    resources: list[str]


def _this_project() -> dict:
    return {"ProjectNames.$": "States.Array($.run.project_name)"}


def _this_version() -> dict:
    return {"ProjectArn.$": PROJECT_ARN, "VersionNames.$": "States.Array($.run.version_name)"}


class TrainingFlow:
    """Builds the definition a phase at a time: each phase's builder takes the state(s) the
    phase goes on to and returns the state it starts with.

    Every task's errors (but those it catches itself) go to the one failure path by a
    ``States.ALL`` catch. The builders name such tasks (``_to_failure``) and ``definition``
    adds those catches last, after every error state's edge into the failure path: CDK writes
    the states in the order it walks the graph, and it walks a state's incoming edges in the
    order they were added. Another order would write the same states in another order, and a
    deployment would update the state machine for nothing.
    """

    def __init__(self, scope: Construct, *, functions: FlowFunctions, assembly: FlowAssembly, grants: FlowGrants, topic: sns.ITopic) -> None:
        self.scope = scope
        self.functions = functions
        self.assembly = assembly
        self.grants = grants
        self.topic = topic
        outcome = self._outcome()
        # The one failure path every error reaches: record, free the dataset, notify. Built
        # first, as every error state leads to it.
        self._notified = self._notify("Notify", then=outcome)
        self._failed = self._record("Record failure", "failed", catch=False)
        self._failed.next(self._notify("Notify failure", then=outcome))
        self._catching: list[sfn.TaskStateBase | sfn.Map] = []

    def definition(self) -> sfn.IChainable:
        """Assembly -> project -> datasets -> training -> evaluation -> deployment -> outcome.

        Training is built first: its failure is the first error state, hence the failure
        path's first edge, which decides the order the states are written in (see the class).
        """
        evaluate = self._lambda("Evaluate", self.functions.evaluate, {"run.$": RUN, "version.$": TRAINED}, "$.evaluation")
        training = self._training(then=evaluate)
        succeeded = self._record("Record success", "succeeded")
        succeeded.next(self._notified)
        not_deployed = self._record("Record not deployed", "not_deployed")
        not_deployed.next(self._notified)
        evaluate.next(self._evaluation_report(then=self._deploy_decision(deploy=self._deployment(then=succeeded), skip=not_deployed)))
        start = self._assembly(then=self._project(then=self._datasets(then=training)))
        for task in self._catching:
            task.add_catch(self._failed, errors=["States.ALL"], result_path="$.error")
        return start

    # -- building blocks ------------------------------------------------------------------------
    def _to_failure(self, task: sfn.TaskStateBase | sfn.Map) -> None:
        """Send the task's errors, other than those it catches itself, to the failure path (see the class)."""
        self._catching.append(task)

    def _lambda(self, id: str, function: lambda_.IFunction, payload: dict, result_path: str, *, catch: bool = True) -> tasks.LambdaInvoke:
        task = tasks.LambdaInvoke(
            self.scope, id, lambda_function=function, payload=sfn.TaskInput.from_object(payload),
            payload_response_only=True, result_path=result_path, retry_on_service_exceptions=False,
        )
        task.add_retry(errors=TRANSIENT_LAMBDA_ERRORS, **RETRY)
        if catch:
            self._to_failure(task)
        return task

    def _record(self, id: str, outcome: str, *, catch: bool = True) -> tasks.LambdaInvoke:
        """The finish function: records the run's outcome, frees the dataset, writes the notification."""
        return self._lambda(id, self.functions.finish, {"outcome": outcome, "state.$": "$"}, "$.notification", catch=catch)

    def _sdk(self, id: str, action: str, parameters: dict, *, result_path: str | None, resources: list[str],
             service: str = "rekognition", statements: list[iam.PolicyStatement] | None = None,
             retry: dict | None = None, catch: bool = True) -> tasks.CallAwsService:
        task = tasks.CallAwsService(
            self.scope, id, service=service, action=action, parameters=parameters, iam_resources=resources,
            # IAM action names are case-insensitive; written as AWS documents them.
            iam_action=f"{service}:{action[0].upper()}{action[1:]}",
            additional_iam_statements=statements, result_path=result_path if result_path is not None else sfn.JsonPath.DISCARD,
        )
        transient = TRANSIENT_SSM_ERRORS if service == "ssm" else TRANSIENT_REKOGNITION_ERRORS
        task.add_retry(errors=transient, **(retry or RETRY))
        if catch:
            self._to_failure(task)
        return task

    def _error(self, id: str, error: str, cause: str | None = None, cause_path: str | None = None) -> sfn.Pass:
        """A Pass that states why the run fails, in the shape a Catch writes ($.error)."""
        parameters = {"Error": error, **({"Cause.$": cause_path} if cause_path else {"Cause": cause or error})}
        state = sfn.Pass(self.scope, id, parameters=parameters, result_path="$.error")
        state.next(self._failed)
        return state

    def _guard(self, id: str, paths: list[str], then: sfn.IChainable, what: str) -> sfn.Choice:
        """Go on only if every path is present; otherwise fail with a readable reason."""
        conditions = [sfn.Condition.is_present(path) for path in paths]
        condition = conditions[0] if len(conditions) == 1 else sfn.Condition.and_(*conditions)
        missing = self._error(f"{id}: unexpected answer", "UnexpectedResponse", f"{what} lacks {', '.join(paths)}")
        return sfn.Choice(self.scope, id).when(condition, then).otherwise(missing)

    def _poll(self, name: str, poll: Poll, describe: Describe, *, decide: Callable[[sfn.IChainable], sfn.IChainable], what: str) -> sfn.IChainable:
        """Start -> wait -> describe -> decide -> (way out | count -> out of time? -> wait).

        ``decide(count)`` builds the Choice after the describe call; its branches that mean
        "not yet" go to ``count``. A transient error that outlasts the describe's retries
        counts as a poll without news too.
        """
        start = sfn.Pass(self.scope, f"Start polling {name}", parameters={"count": 0, "limit.$": poll.limit_path}, result_path="$.poll")
        wait = sfn.Wait(self.scope, f"Wait for {name}", time=sfn.WaitTime.seconds_path(poll.wait_path))
        count = sfn.Pass(self.scope, f"Count {name} poll", parameters={"count.$": "States.MathAdd($.poll.count, 1)", "limit.$": "$.poll.limit"},
                         result_path="$.poll")
        timed_out = self._error(f"{name.capitalize()} timed out", "WaitTimedOut",
                                cause_path=f"States.Format('{what} still not ready after {{}} polls', $.poll.count)")
        call = self._sdk(describe.id, describe.action, describe.parameters, result_path=describe.result_path,
                         resources=describe.resources, retry=POLL_RETRY, catch=False)
        call.add_catch(count, errors=TRANSIENT_REKOGNITION_ERRORS, result_path="$.poll_error")
        self._to_failure(call)
        start.next(wait).next(call).next(decide(count))
        count.next(sfn.Choice(self.scope, f"{name.capitalize()} out of time?")
                   .when(sfn.Condition.number_greater_than_equals_json_path("$.poll.count", "$.poll.limit"), timed_out)
                   .otherwise(wait))
        return start

    def _status_poll(self, name: str, poll: Poll, describe: Describe, *, status_path: str, in_progress: list[str],
                     outcomes: dict[str, sfn.IChainable], what: str) -> sfn.IChainable:
        """A poll on a status: outcomes leave the loop, in-progress statuses poll again, and any
        other status (or a terminal one nobody expected) fails the run naming it. A describe
        that lacks the status (the resource not listed yet) polls again."""

        def decide(count: sfn.IChainable) -> sfn.IChainable:
            status = sfn.Choice(self.scope, f"{name.capitalize()} status?")
            for value, target in outcomes.items():
                status.when(sfn.Condition.string_equals(status_path, value), target)
            for value in in_progress:
                status.when(sfn.Condition.string_equals(status_path, value), count)
            status.otherwise(self._error(f"{name.capitalize()} status unexpected", "UnexpectedStatus",
                                         cause_path=f"States.Format('{what} is {{}}', {status_path})"))
            return sfn.Choice(self.scope, f"{name.capitalize()} described?").when(sfn.Condition.is_present(status_path), status).otherwise(count)

        return self._poll(name, poll, describe, decide=decide, what=what)

    def _failed_with_message(self, id: str, error: str, message_path: str, what: str) -> sfn.Choice:
        with_message = self._error(f"{id} (with message)", error, cause_path=f"States.Format('{what}: {{}}', {message_path})")
        without = self._error(f"{id} (no message)", error, f"{what} (the service gave no message)")
        return sfn.Choice(self.scope, id).when(sfn.Condition.is_present(message_path), with_message).otherwise(without)

    # -- assembly: prepare, read the fragments into shards, merge them into manifests -----------
    def _assembly(self, then: sfn.IChainable) -> sfn.IChainable:
        f = self.functions
        prepare = self._lambda("Prepare", f.prepare, {"input.$": "$$.Execution.Input", "execution.$": "$$.Execution.Id"}, RUN)
        assemble = self._lambda("Assemble manifests", f.assemble, {"run.$": RUN}, "$.assembly")
        prepare.next(self._read_fragments()).next(assemble).next(then)
        return prepare

    def _read_fragments(self) -> sfn.DistributedMap:
        """Every fragment of the dataset read by child Lambdas, a batch each, into the run's shards."""
        a = self.assembly
        reader = sfn.DistributedMap(
            self.scope, "Read fragments",
            item_reader=sfn.S3ObjectsItemReader(
                bucket=a.artifacts_bucket, prefix=sfn.JsonPath.format(FRAGMENTS_PREFIX + "{}/", sfn.JsonPath.string_at("$.run.dataset"))),
            item_batcher=sfn.ItemBatcher(max_items_per_batch=a.batch_size, max_input_bytes_per_batch=MAX_BATCH_INPUT_BYTES,
                                         batch_input={"run.$": "$.run"}),
            max_concurrency=a.max_concurrency,
            # Children write shards; their outputs (a few counts each) are not kept, so the
            # Map's output stays far below the 256 KiB a state may pass on.
            result_path=sfn.JsonPath.DISCARD,
            label=READ_FRAGMENTS_LABEL,
        )
        child = tasks.LambdaInvoke(
            self.scope, "Write shard", lambda_function=self.functions.shard,  # its input, the batch, is the payload
            payload_response_only=True, retry_on_service_exceptions=False, output_path=sfn.JsonPath.DISCARD,
        )
        child.add_retry(errors=TRANSIENT_LAMBDA_ERRORS, **RETRY)
        reader.item_processor(child)
        self._to_failure(reader)  # a child that fails for good fails the Map, and the run
        return reader

    # -- the dataset's project: found or created, its old datasets deleted -----------------------
    def _project(self, then: sfn.IChainable) -> sfn.IChainable:
        # DescribeProjects and CreateProject have no resource-level permission (Service Authorization Reference).
        find = self._sdk("Find project", "describeProjects", _this_project(), result_path="$.lookup", resources=["*"])
        create = self._sdk("Create project", "createProject", {"ProjectName.$": "$.run.project_name"},
                           result_path="$.created_project", resources=["*"])
        use_existing = sfn.Pass(self.scope, "Use existing project", parameters={"arn.$": f"{EXISTING_PROJECT}.ProjectArn", "datasets.$": f"{EXISTING_PROJECT}.Datasets"}, result_path="$.project")
        use_empty = sfn.Pass(self.scope, "Use existing project without datasets", parameters={"arn.$": f"{EXISTING_PROJECT}.ProjectArn", "datasets": []}, result_path="$.project")
        use_new = sfn.Pass(self.scope, "Use new project", parameters={"arn.$": "$.created_project.ProjectArn", "datasets": []}, result_path="$.project")
        find.next(
            sfn.Choice(self.scope, "Project exists?")
            .when(sfn.Condition.is_present(f"{EXISTING_PROJECT}.ProjectArn"),
                  sfn.Choice(self.scope, "Project has datasets?").when(sfn.Condition.is_present(f"{EXISTING_PROJECT}.Datasets"), use_existing)
                  .otherwise(use_empty))
            .otherwise(create))
        create.next(self._guard("Project created?", ["$.created_project.ProjectArn"], use_new, "CreateProject's answer"))
        without_old_datasets = self._old_datasets_deleted(then)
        for state in (use_existing, use_empty, use_new):
            state.next(without_old_datasets)
        return find

    def _old_datasets_deleted(self, then: sfn.IChainable) -> sfn.Choice:
        """Delete the project's datasets, if any, and wait until the project lists none (deleting is asynchronous)."""
        delete_all = sfn.Map(self.scope, "Delete previous datasets", items_path="$.project.datasets", result_path=sfn.JsonPath.DISCARD, max_concurrency=2)
        delete_one = self._sdk("Delete dataset", "deleteDataset", {"DatasetArn.$": "$.DatasetArn"}, result_path=None,
                               resources=self.grants.project_arns, catch=False)  # a state inside a Map cannot catch into the outer machine
        delete_one.add_retry(errors=["Rekognition.ResourceInUseException"], interval=Duration.seconds(10), backoff_rate=2.0, max_attempts=5)
        nothing_to_delete = sfn.Pass(self.scope, "Nothing to delete")
        delete_one.add_catch(nothing_to_delete, errors=["Rekognition.ResourceNotFoundException"], result_path=sfn.JsonPath.DISCARD)  # gone already
        delete_all.item_processor(
            sfn.Choice(self.scope, "Dataset named?").when(sfn.Condition.is_present("$.DatasetArn"), delete_one).otherwise(nothing_to_delete))
        self._to_failure(delete_all)

        deleted = sfn.Pass(self.scope, "Previous datasets deleted")
        deleted.next(then)
        delete_all.next(self._poll(
            "deletion", DELETION_POLL, Describe("Describe project datasets", "describeProjects", _this_project(), "$.cleanup", ["*"]),
            what="an old dataset",
            decide=lambda count: sfn.Choice(self.scope, "Datasets left?")
            .when(sfn.Condition.is_present("$.cleanup.ProjectDescriptions[0].Datasets[0]"), count).otherwise(deleted)))
        return (sfn.Choice(self.scope, "Previous datasets?")
                .when(sfn.Condition.is_present("$.project.datasets[0]"), delete_all)
                .otherwise(then))

    # -- new datasets from this run's manifests -------------------------------------------------
    def _datasets(self, then: sfn.IChainable) -> sfn.IChainable:
        ready = sfn.Pass(self.scope, "Datasets ready")
        ready.next(then)
        create_train = self._create_dataset("TRAIN", "$.assembly.train_manifest")
        create_test = self._create_dataset("TEST", "$.assembly.test_manifest")
        both_created = self._dataset_created("train", self._dataset_created("test", ready))
        create_train.next(self._guard("Train dataset created?", ["$.datasets.train.DatasetArn"], create_test, "CreateDataset's answer"))
        create_test.next(self._guard("Test dataset created?", ["$.datasets.test.DatasetArn"], both_created, "CreateDataset's answer"))
        return create_train

    def _create_dataset(self, kind: str, manifest_path: str) -> tasks.CallAwsService:
        g = self.grants
        task = self._sdk(
            f"Create {kind.lower()} dataset", "createDataset",
            {"ProjectArn.$": PROJECT_ARN, "DatasetType": kind, "DatasetSource": {"GroundTruthManifest": {
                "S3Object": {"Bucket.$": "$.run.artifacts_bucket", "Name.$": manifest_path}}}},
            result_path=f"$.datasets.{kind.lower()}", resources=g.project_arns, statements=g.training_data_reads,
        )
        # The old dataset of this type may still hold its place for a moment after deletion.
        task.add_retry(errors=["Rekognition.ResourceInUseException", "Rekognition.ResourceAlreadyExistsException"],
                       interval=Duration.seconds(5), backoff_rate=2.0, max_attempts=5)
        return task

    def _dataset_created(self, kind: str, then: sfn.IChainable) -> sfn.IChainable:
        """Poll a new dataset until Custom Labels has read its manifest."""
        state = f"$.datasets.{kind}_state"
        describe = Describe(f"Describe {kind} dataset", "describeDataset", {"DatasetArn.$": f"$.datasets.{kind}.DatasetArn"},
                            state, self.grants.project_arns)
        failed = self._failed_with_message(f"{kind.capitalize()} dataset failed", "DatasetCreationFailed",
                                           f"{state}.DatasetDescription.StatusMessage", f"{kind} dataset")
        return self._status_poll(f"{kind} dataset", DATASET_POLL, describe, status_path=f"{state}.DatasetDescription.Status",
                                 in_progress=["CREATE_IN_PROGRESS"], outcomes={"CREATE_COMPLETE": then, "CREATE_FAILED": failed},
                                 what=f"the {kind} dataset")

    # -- training: a new project version, polled until trained -----------------------------------
    def _training(self, then: sfn.IChainable) -> sfn.IChainable:
        g = self.grants
        create_version = self._sdk(
            "Create project version", "createProjectVersion",
            {"ProjectArn.$": PROJECT_ARN, "VersionName.$": "$.run.version_name",
             "OutputConfig": {"S3Bucket.$": "$.run.artifacts_bucket", "S3KeyPrefix.$": "States.Format('{}output/', $.run.prefix)"},
             "Tags": {"fashion-pipeline:dataset.$": "$.run.dataset"}},
            result_path="$.version", resources=g.project_arns, statements=g.training_output_writes,
        )
        failed = self._failed_with_message("Training failed", "TrainingFailed", f"{TRAINED}.StatusMessage", "training")
        trained = self._status_poll(
            "training", TRAINING_POLL, Describe("Describe training", "describeProjectVersions", _this_version(), "$.training", g.project_arns),
            status_path=f"{TRAINED}.Status", in_progress=["TRAINING_IN_PROGRESS"],
            outcomes={"TRAINING_COMPLETED": then, "TRAINING_FAILED": failed}, what="training")
        create_version.next(self._guard("Version created?", [VERSION_ARN], trained, "CreateProjectVersion's answer"))
        return create_version

    # -- evaluation: the report, then deploy or not ------------------------------------------------
    def _evaluation_report(self, then: sfn.IChainable) -> sfn.IChainable:
        """The run's evaluation report (runs/<dataset>/<run-id>/evaluation/index.html), whether the
        model is deployed or not. Any failure is recorded at ``$.report_error`` and the run goes
        on: a report never fails or holds up a run. It runs before the deployment, so the
        dataset's model pointer still names the previous live model, which it compares with."""
        write = self._lambda("Write evaluation report", self.functions.report, {"run.$": RUN, "version.$": TRAINED}, "$.report",
                             catch=False)
        not_written = sfn.Pass(self.scope, "Report not written")  # the Catch has put the error at $.report_error
        write.add_catch(not_written, errors=["States.ALL"], result_path="$.report_error")
        write.next(then)
        not_written.next(then)
        return write

    def _deploy_decision(self, *, deploy: sfn.IChainable, skip: sfn.IChainable) -> sfn.Choice:
        return (sfn.Choice(self.scope, "Deploy?")
                .when(sfn.Condition.boolean_equals("$.evaluation.deploy", True), deploy)
                .otherwise(skip))

    # -- deployment: start the model, publish it as the current one, stop the others ------------
    def _deployment(self, then: sfn.IChainable) -> sfn.IChainable:
        g = self.grants
        start_model = self._sdk(
            "Start model", "startProjectVersion",
            {"ProjectVersionArn.$": VERSION_ARN, "MinInferenceUnits.$": "$.run.options.inference_units"}, result_path=None, resources=g.project_arns,
        )
        failed = self._failed_with_message("Deployment failed", "DeploymentFailed", f"{DEPLOYED}.StatusMessage", "the model failed to start")
        start_model.next(self._status_poll(
            "model", MODEL_POLL, Describe("Describe model", "describeProjectVersions", _this_version(), "$.deployment", g.project_arns),
            status_path=f"{DEPLOYED}.Status", in_progress=["STARTING"],
            outcomes={"RUNNING": self._published(then), "FAILED": failed}, what="the model"))
        return start_model

    def _published(self, then: sfn.IChainable) -> sfn.IChainable:
        """The running model written to its dataset's model pointer, then the dataset's other models stopped."""
        g = self.grants
        # The pointer's JSON is lifecycle.ModelPointer's (the inference API parses it with
        # parse_pointer): this state says only where each of its fields comes from.
        sources = {
            "project_version_arn": VERSION_ARN, "project_arn": PROJECT_ARN, "version_name": "$.run.version_name",
            "dataset": "$.run.dataset", "f1": "$.evaluation.f1", "inference_units": "$.run.options.inference_units",
            "deployed_at": "$$.State.EnteredTime",
        }  # fmt: skip
        if list(sources) != [field.name for field in fields(ModelPointer)]:
            raise ValueError(f"the pointer state must set exactly ModelPointer's fields, in order: {[f.name for f in fields(ModelPointer)]}")
        pointer = sfn.Pass(self.scope, "Describe current model", parameters={
            **{f"{name}.$": path for name, path in sources.items()}, "status": "RUNNING"}, result_path="$.pointer")
        publish = self._sdk(
            "Publish current model", "putParameter",
            {"Name.$": f"States.Format('{model_pointer_name(g.model_parameter_prefix, '{}')}', $.run.dataset)",
             "Type": "String", "Overwrite": True, "Value.$": "States.JsonToString($.pointer)"},
            result_path=None, service="ssm", resources=g.model_parameter_arns,
        )
        retire = self._lambda("Stop previous models", self.functions.retire,
                              {"run.$": RUN, "project_arn.$": PROJECT_ARN, "model_arn.$": VERSION_ARN}, "$.retired")
        pointer.next(publish).next(retire).next(then)
        return pointer

    # -- outcomes: notify, then end the execution as the run ended --------------------------------
    def _outcome(self) -> sfn.Choice:
        return (sfn.Choice(self.scope, "Outcome?")
                .when(sfn.Condition.string_equals("$.notification.message.status", "failed"),
                      sfn.Fail(self.scope, "Run failed", error="TrainingRunFailed", cause_path="$.notification.message.reason"))
                .otherwise(sfn.Succeed(self.scope, "Run finished", output_path="$.notification.message")))

    def _notify(self, id: str, then: sfn.IChainable) -> sfn.Pass:
        publish = tasks.SnsPublish(
            self.scope, f"{id} by email", topic=self.topic, subject=sfn.JsonPath.string_at("$.notification.subject"),
            message=sfn.TaskInput.from_json_path_at("States.JsonToString($.notification.message)"), result_path=sfn.JsonPath.DISCARD,
        )
        event = tasks.EventBridgePutEvents(
            self.scope, f"{id} on EventBridge", entries=[tasks.EventBridgePutEventsEntry(
                detail=sfn.TaskInput.from_json_path_at("$.notification.message"),
                detail_type=sfn.JsonPath.format("Training run {}", sfn.JsonPath.string_at("$.notification.message.status")),
                source=EVENT_SOURCE)], result_path=sfn.JsonPath.DISCARD,
        )
        for task in (publish, event):
            # Whatever fails a notification is retried a little, then given up (caught below).
            task.add_retry(errors=["States.TaskFailed"], interval=Duration.seconds(2), backoff_rate=2.0, max_attempts=3)
        # A notification that cannot be sent must not turn a finished run into a failed one.
        start = sfn.Pass(self.scope, f"{id} start")
        done = sfn.Pass(self.scope, f"{id} done")
        publish.add_catch(event, result_path="$.notify_error")
        event.add_catch(done, result_path="$.notify_error")
        start.next(publish).next(event).next(done).next(then)
        return start
