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

from dataclasses import dataclass
from typing import Any, Callable

from aws_cdk import Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from fashion_pipeline.layout import FRAGMENTS_PREFIX

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
TRANSIENT_LAMBDA_ERRORS = [
    "Lambda.TooManyRequestsException",
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
]
TRANSIENT_SSM_ERRORS = ["Ssm.InternalServerErrorException", "Ssm.TooManyUpdatesException"]

_RETRY = {"interval": Duration.seconds(1), "backoff_rate": 2.0, "max_attempts": 6, "jitter_strategy": sfn.JitterType.FULL}
# Inside a polling loop a describe call retries a little, then counts as a poll without news.
_POLL_RETRY = {"interval": Duration.seconds(2), "backoff_rate": 2.0, "max_attempts": 2, "jitter_strategy": sfn.JitterType.FULL}


@dataclass(frozen=True)
class FlowFunctions:
    prepare: lambda_.IFunction
    shard: lambda_.IFunction
    assemble: lambda_.IFunction
    evaluate: lambda_.IFunction
    retire: lambda_.IFunction
    finish: lambda_.IFunction


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
    model_parameter_name: str
    model_parameter_arn: str
    training_data_reads: list[iam.PolicyStatement]  # Custom Labels reads the manifests and images as the caller
    training_output_writes: list[iam.PolicyStatement]  # ... and writes training output as the caller


class TrainingFlow:
    """Builds the definition. ``tasks_to_catch`` lists every state whose errors go to the failure path."""

    def __init__(self, scope: Construct, *, functions: FlowFunctions, assembly: FlowAssembly, grants: FlowGrants, topic: sns.ITopic) -> None:
        self.scope = scope
        self.functions = functions
        self.assembly = assembly
        self.grants = grants
        self.topic = topic
        self.tasks_to_catch: list[sfn.TaskStateBase | sfn.Map] = []
        # The one failure path every error reaches: record, free the dataset, notify.
        self.failed = self._lambda("Record failure", functions.finish, {"outcome": "failed", "state.$": "$"}, "$.notification", catch=False)

    # -- building blocks ------------------------------------------------------------------------
    def _lambda(self, id: str, function: lambda_.IFunction, payload: dict, result_path: str, *, catch: bool = True) -> tasks.LambdaInvoke:
        task = tasks.LambdaInvoke(
            self.scope, id, lambda_function=function, payload=sfn.TaskInput.from_object(payload),
            payload_response_only=True, result_path=result_path, retry_on_service_exceptions=False,
        )
        task.add_retry(errors=TRANSIENT_LAMBDA_ERRORS, **_RETRY)
        if catch:
            self.tasks_to_catch.append(task)
        return task

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
        task.add_retry(errors=transient, **(retry or _RETRY))
        if catch:
            self.tasks_to_catch.append(task)
        return task

    def _error(self, id: str, error: str, cause: str | None = None, cause_path: str | None = None) -> sfn.Pass:
        """A Pass that states why the run fails, in the shape a Catch writes ($.error)."""
        parameters = {"Error": error, **({"Cause.$": cause_path} if cause_path else {"Cause": cause or error})}
        state = sfn.Pass(self.scope, id, parameters=parameters, result_path="$.error")
        state.next(self.failed)
        return state

    def _guard(self, id: str, paths: list[str], then: sfn.IChainable, what: str) -> sfn.Choice:
        """Go on only if every path is present; otherwise fail with a readable reason."""
        conditions = [sfn.Condition.is_present(path) for path in paths]
        condition = conditions[0] if len(conditions) == 1 else sfn.Condition.and_(*conditions)
        missing = self._error(f"{id}: unexpected answer", "UnexpectedResponse", f"{what} lacks {', '.join(paths)}")
        return sfn.Choice(self.scope, id).when(condition, then).otherwise(missing)

    def _poll(self, name: str, *, wait_path: str, limit_path: str, describe: tasks.CallAwsService,
              decide: Callable[[sfn.IChainable], sfn.IChainable], what: str) -> sfn.IChainable:
        """Start -> wait -> describe -> decide -> (way out | count -> out of time? -> wait).

        ``decide(count)`` builds the Choice after the describe call; its branches that mean
        "not yet" go to ``count``. A transient error that outlasts the describe's retries
        counts as a poll without news too.
        """
        start = sfn.Pass(self.scope, f"Start polling {name}", parameters={"count": 0, "limit.$": limit_path}, result_path="$.poll")
        wait = sfn.Wait(self.scope, f"Wait for {name}", time=sfn.WaitTime.seconds_path(wait_path))
        count = sfn.Pass(self.scope, f"Count {name} poll", parameters={"count.$": "States.MathAdd($.poll.count, 1)", "limit.$": "$.poll.limit"},
                         result_path="$.poll")
        timed_out = self._error(f"{name.capitalize()} timed out", "WaitTimedOut",
                                cause_path=f"States.Format('{what} still not ready after {{}} polls', $.poll.count)")
        describe.add_catch(count, errors=TRANSIENT_REKOGNITION_ERRORS, result_path="$.poll_error")
        start.next(wait).next(describe).next(decide(count))
        count.next(sfn.Choice(self.scope, f"{name.capitalize()} out of time?")
                   .when(sfn.Condition.number_greater_than_equals_json_path("$.poll.count", "$.poll.limit"), timed_out)
                   .otherwise(wait))
        return start

    def _status_poll(self, name: str, *, status_path: str, in_progress: list[str], outcomes: dict[str, sfn.IChainable],
                     what: str, **loop: Any) -> sfn.IChainable:
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

        return self._poll(name, decide=decide, what=what, **loop)

    def _failed_with_message(self, id: str, error: str, message_path: str, what: str) -> sfn.Choice:
        with_message = self._error(f"{id} (with message)", error, cause_path=f"States.Format('{what}: {{}}', {message_path})")
        without = self._error(f"{id} (no message)", error, f"{what} (the service gave no message)")
        return sfn.Choice(self.scope, id).when(sfn.Condition.is_present(message_path), with_message).otherwise(without)

    # -- the definition -------------------------------------------------------------------------
    def definition(self) -> sfn.IChainable:
        f, g = self.functions, self.grants
        run = "$.run"
        prepare = self._lambda("Prepare", f.prepare, {"input.$": "$$.Execution.Input", "execution.$": "$$.Execution.Id"}, "$.run")
        read_fragments = self._read_fragments()
        assemble = self._lambda("Assemble manifests", f.assemble, {"run.$": run}, "$.assembly")

        # -- the dataset's project: found or created, its old datasets deleted -------------------
        find_project = self._sdk("Find project", "describeProjects", {"ProjectNames.$": "States.Array($.run.project_name)"},
                                 result_path="$.lookup", resources=["*"])  # DescribeProjects has no resource-level permission
        existing = "$.lookup.ProjectDescriptions[0]"
        use_project = sfn.Pass(self.scope, "Use existing project", parameters={"arn.$": f"{existing}.ProjectArn", "datasets.$": f"{existing}.Datasets"}, result_path="$.project")
        use_empty_project = sfn.Pass(self.scope, "Use existing project without datasets", parameters={"arn.$": f"{existing}.ProjectArn", "datasets": []}, result_path="$.project")
        # CreateProject has no resource-level permission (Service Authorization Reference).
        create_project = self._sdk("Create project", "createProject", {"ProjectName.$": "$.run.project_name"},
                                   result_path="$.created_project", resources=["*"])
        use_new_project = sfn.Pass(self.scope, "Use new project", parameters={"arn.$": "$.created_project.ProjectArn", "datasets": []}, result_path="$.project")

        delete_datasets = sfn.Map(self.scope, "Delete previous datasets", items_path="$.project.datasets", result_path=sfn.JsonPath.DISCARD, max_concurrency=2)
        delete_one = self._sdk("Delete dataset", "deleteDataset", {"DatasetArn.$": "$.DatasetArn"}, result_path=None,
                               resources=g.project_arns, catch=False)  # a state inside a Map cannot catch into the outer machine
        delete_one.add_retry(errors=["Rekognition.ResourceInUseException"], interval=Duration.seconds(10), backoff_rate=2.0, max_attempts=5)
        nothing_to_delete = sfn.Pass(self.scope, "Nothing to delete")
        delete_one.add_catch(nothing_to_delete, errors=["Rekognition.ResourceNotFoundException"], result_path=sfn.JsonPath.DISCARD)  # gone already
        delete_datasets.item_processor(
            sfn.Choice(self.scope, "Dataset named?").when(sfn.Condition.is_present("$.DatasetArn"), delete_one).otherwise(nothing_to_delete))
        self.tasks_to_catch.append(delete_datasets)

        # -- new datasets from this run's manifests -----------------------------------------------
        def create_dataset(kind: str, manifest_path: str) -> tasks.CallAwsService:
            task = self._sdk(
                f"Create {kind.lower()} dataset", "createDataset",
                {"ProjectArn.$": "$.project.arn", "DatasetType": kind, "DatasetSource": {"GroundTruthManifest": {
                    "S3Object": {"Bucket.$": "$.run.artifacts_bucket", "Name.$": manifest_path}}}},
                result_path=f"$.datasets.{kind.lower()}", resources=g.project_arns, statements=g.training_data_reads,
            )
            # The old dataset of this type may still hold its place for a moment after deletion.
            task.add_retry(errors=["Rekognition.ResourceInUseException", "Rekognition.ResourceAlreadyExistsException"],
                           interval=Duration.seconds(5), backoff_rate=2.0, max_attempts=5)
            return task

        create_train = create_dataset("TRAIN", "$.assembly.train_manifest")
        create_test = create_dataset("TEST", "$.assembly.test_manifest")

        def dataset_wait(kind: str, then: sfn.IChainable) -> sfn.IChainable:
            arn = f"$.datasets.{kind}.DatasetArn"
            describe = self._sdk(f"Describe {kind} dataset", "describeDataset", {"DatasetArn.$": arn},
                                 result_path=f"$.datasets.{kind}_state", resources=g.project_arns, retry=_POLL_RETRY)
            status = f"$.datasets.{kind}_state.DatasetDescription.Status"
            message = f"$.datasets.{kind}_state.DatasetDescription.StatusMessage"
            failed = self._failed_with_message(f"{kind.capitalize()} dataset failed", "DatasetCreationFailed", message, f"{kind} dataset")
            return self._status_poll(f"{kind} dataset", wait_path="$.run.options.start_poll_seconds", limit_path="$.run.limits.dataset_polls",
                                     describe=describe, status_path=status, in_progress=["CREATE_IN_PROGRESS"],
                                     outcomes={"CREATE_COMPLETE": then, "CREATE_FAILED": failed}, what=f"the {kind} dataset")

        # -- training -------------------------------------------------------------------------------
        version_arn = "$.version.ProjectVersionArn"
        create_version = self._sdk(
            "Create project version", "createProjectVersion",
            {"ProjectArn.$": "$.project.arn", "VersionName.$": "$.run.version_name",
             "OutputConfig": {"S3Bucket.$": "$.run.artifacts_bucket", "S3KeyPrefix.$": "States.Format('{}output/', $.run.prefix)"},
             "Tags": {"fashion-pipeline:dataset.$": "$.run.dataset"}},
            result_path="$.version", resources=g.project_arns, statements=g.training_output_writes,
        )
        describe_training = self._sdk(
            "Describe training", "describeProjectVersions",
            {"ProjectArn.$": "$.project.arn", "VersionNames.$": "States.Array($.run.version_name)"},
            result_path="$.training", resources=g.project_arns, retry=_POLL_RETRY,
        )
        trained = "$.training.ProjectVersionDescriptions[0]"
        evaluate = self._lambda("Evaluate", f.evaluate, {"run.$": run, "version.$": trained}, "$.evaluation")
        training_failed = self._failed_with_message("Training failed", "TrainingFailed", f"{trained}.StatusMessage", "training")
        training = self._status_poll("training", wait_path="$.run.options.poll_seconds", limit_path="$.run.limits.training_polls",
                                     describe=describe_training, status_path=f"{trained}.Status", in_progress=["TRAINING_IN_PROGRESS"],
                                     outcomes={"TRAINING_COMPLETED": evaluate, "TRAINING_FAILED": training_failed}, what="training")

        # -- deployment -----------------------------------------------------------------------------
        start_model = self._sdk(
            "Start model", "startProjectVersion",
            {"ProjectVersionArn.$": version_arn, "MinInferenceUnits.$": "$.run.options.inference_units"}, result_path=None, resources=g.project_arns,
        )
        describe_model = self._sdk(
            "Describe model", "describeProjectVersions",
            {"ProjectArn.$": "$.project.arn", "VersionNames.$": "States.Array($.run.version_name)"},
            result_path="$.deployment", resources=g.project_arns, retry=_POLL_RETRY,
        )
        deployed = "$.deployment.ProjectVersionDescriptions[0]"
        pointer = sfn.Pass(self.scope, "Describe current model", parameters={
            "project_version_arn.$": version_arn, "project_arn.$": "$.project.arn", "version_name.$": "$.run.version_name",
            "dataset.$": "$.run.dataset", "f1.$": "$.evaluation.f1", "inference_units.$": "$.run.options.inference_units",
            "deployed_at.$": "$$.State.EnteredTime", "status": "RUNNING"}, result_path="$.pointer")
        publish = self._sdk(
            "Publish current model", "putParameter",
            {"Name": g.model_parameter_name, "Type": "String", "Overwrite": True, "Value.$": "States.JsonToString($.pointer)"},
            result_path=None, service="ssm", resources=[g.model_parameter_arn],
        )
        retire = self._lambda("Stop previous models", f.retire, {"run.$": run, "project_arn.$": "$.project.arn", "model_arn.$": version_arn}, "$.retired")
        deploy_failed = self._failed_with_message("Deployment failed", "DeploymentFailed", f"{deployed}.StatusMessage", "the model failed to start")
        deployment = self._status_poll("model", wait_path="$.run.options.start_poll_seconds", limit_path="$.run.limits.model_polls",
                                       describe=describe_model, status_path=f"{deployed}.Status", in_progress=["STARTING"],
                                       outcomes={"RUNNING": pointer, "FAILED": deploy_failed}, what="the model")

        # -- outcomes -------------------------------------------------------------------------------
        finish_ok = self._lambda("Record success", f.finish, {"outcome": "succeeded", "state.$": "$"}, "$.notification")
        finish_skip = self._lambda("Record not deployed", f.finish, {"outcome": "not_deployed", "state.$": "$"}, "$.notification")
        outcome = (sfn.Choice(self.scope, "Outcome?")
                   .when(sfn.Condition.string_equals("$.notification.message.status", "failed"),
                         sfn.Fail(self.scope, "Run failed", error="TrainingRunFailed", cause_path="$.notification.message.reason"))
                   .otherwise(sfn.Succeed(self.scope, "Run finished", output_path="$.notification.message")))
        notify, notify_failure = self._notify("Notify"), self._notify("Notify failure")
        notify.next(outcome)
        notify_failure.next(outcome)
        finish_ok.next(notify)
        finish_skip.next(notify)
        self.failed.next(notify_failure)

        # -- wiring ---------------------------------------------------------------------------------
        deletion_done = sfn.Pass(self.scope, "Previous datasets deleted")
        deletion_done.next(create_train)
        describe_cleanup = self._sdk("Describe project datasets", "describeProjects", {"ProjectNames.$": "States.Array($.run.project_name)"},
                                     result_path="$.cleanup", resources=["*"], retry=_POLL_RETRY)
        # Deleting is asynchronous: the loop ends when the project lists no dataset any more.
        deletion = self._poll(
            "deletion", wait_path="$.run.options.start_poll_seconds", limit_path="$.run.limits.deletion_polls",
            describe=describe_cleanup, what="an old dataset",
            decide=lambda count: sfn.Choice(self.scope, "Datasets left?")
            .when(sfn.Condition.is_present("$.cleanup.ProjectDescriptions[0].Datasets[0]"), count).otherwise(deletion_done))

        prepare.next(read_fragments).next(assemble).next(find_project).next(
            sfn.Choice(self.scope, "Project exists?")
            .when(sfn.Condition.is_present(f"{existing}.ProjectArn"),
                  sfn.Choice(self.scope, "Project has datasets?").when(sfn.Condition.is_present(f"{existing}.Datasets"), use_project)
                  .otherwise(use_empty_project))
            .otherwise(create_project))
        create_project.next(self._guard("Project created?", ["$.created_project.ProjectArn"], use_new_project, "CreateProject's answer"))
        old_datasets = (sfn.Choice(self.scope, "Previous datasets?")
                        .when(sfn.Condition.is_present("$.project.datasets[0]"), delete_datasets)
                        .otherwise(create_train))
        for state in (use_project, use_empty_project, use_new_project):
            state.next(old_datasets)
        delete_datasets.next(deletion)
        test_ready = sfn.Pass(self.scope, "Datasets ready")
        create_train.next(self._guard("Train dataset created?", ["$.datasets.train.DatasetArn"], create_test, "CreateDataset's answer"))
        create_test.next(self._guard("Test dataset created?", ["$.datasets.test.DatasetArn"], dataset_wait("train", dataset_wait("test", test_ready)), "CreateDataset's answer"))
        test_ready.next(create_version)
        create_version.next(self._guard("Version created?", [version_arn], training, "CreateProjectVersion's answer"))
        evaluate.next(
            sfn.Choice(self.scope, "Deploy?")
            .when(sfn.Condition.boolean_equals("$.evaluation.deploy", True), start_model)
            .otherwise(finish_skip))
        start_model.next(deployment)
        pointer.next(publish).next(retire).next(finish_ok)

        for task in self.tasks_to_catch:
            task.add_catch(self.failed, errors=["States.ALL"], result_path="$.error")
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
        child.add_retry(errors=TRANSIENT_LAMBDA_ERRORS, **_RETRY)
        reader.item_processor(child)
        self.tasks_to_catch.append(reader)  # a child that fails for good fails the Map, and the run
        return reader

    def _notify(self, id: str) -> sfn.Chain:
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
        start.next(publish).next(event).next(done)
        return sfn.Chain.custom(start, [done], done)
