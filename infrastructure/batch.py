"""Batch detection: every object under a prefix of the dataset bucket's ``images/`` sent to a
dataset's model, the answers written to the artifacts bucket.

Uploading ``batch/<job>.json`` to the dataset bucket (``fashion_pipeline.batch`` describes the
request) starts the "BatchDetection" state machine through an EventBridge rule, as
``requests/<dataset>.json`` starts a training run:

    Prepare job (read and check the request, the dataset's model pointer, DescribeProjectVersions,
        start or not, estimate)
    -> [start the model if it is stopped] -> poll until RUNNING (bounded: start_polls)
    -> Detect images: a Distributed Map over the prefix (S3 ItemReader), BATCH_SIZE images per
       child Lambda, MaxConcurrency from the model's inference units ($.job.concurrency)
    -> Release model (the job's lease; fashion_pipeline.batch_leases) -> stop the model if the
       release says so -> Merge results (results.jsonl, summary.json)

Jobs share a model through leases: Prepare takes the job's, and of two jobs that find the model
STOPPED one claims its start; the release drops it and says whether the job stops the model
(the last job out stops a model a batch job started). Every failure after Prepare, and a
refused request, goes to one path: release the model if the job holds a lease and has not
released it, stop it if the release says so and the job has not stopped it yet, then record
the summary with the reason, then fail. A release that fails for good, after its retries,
drops the job's lease with an SDK task of its own and leaves the model running (the idle
auto-stop's to stop), rather than risk stopping it under another job.
A key one level deeper (``batch/a/b.json``) is no job: Prepare says so and the execution ends.

The grants are made here, on exactly the resources the job touches: the functions receive the
buckets and the API's activity table as props.
"""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from fashion_pipeline.batch import BATCH_SIZE
from fashion_pipeline.batch_leases import DROP_UPDATE, LEASE_NAMES, LEASE_SECONDS, RELEASED_AT, RELEASED_BY
from fashion_pipeline.layout import BATCH_PREFIX, BATCH_REQUEST_SUFFIX, IMAGES_PREFIX
from infrastructure.config import PipelineConfig
from infrastructure.functions import ProjectFunction, log_retention
from infrastructure.nag import acknowledge, acknowledge_distributed_map, object_wildcard
from infrastructure.run_time_arns import acknowledge_pointers, acknowledge_projects, pointer_arns, project_arns
from infrastructure.training_flow import (
    MAX_BATCH_INPUT_BYTES, POLL_RETRY, RETRY, TRANSIENT_DYNAMODB_ERRORS, TRANSIENT_LAMBDA_ERRORS, TRANSIENT_REKOGNITION_ERRORS,
)

MAP_LABEL = "DetectImages"
# Prepare counts the prefix, one ListObjectsV2 page of 1,000 keys after another: botocore parses
# a page in 63-89 ms of one vCPU, so at 512 MB (0.29 vCPU) 391k objects took ~126 s and 2M
# ~645 s, past the default minute. At one full vCPU (1,769 MB) 2M take ~160-210 s
# (bench/bench_prepare_count.py). Prepare runs once per job, so its size costs next to nothing.
PREPARE_MEMORY_MB = 1769
PREPARE_TIMEOUT = Duration.minutes(10)
MODEL = "$.job.model"
DESCRIBED_STATUS = "$.described.ProjectVersionDescriptions[0].Status"


class BatchDetection(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        config: PipelineConfig,
        dataset_bucket: s3.IBucket,
        artifacts_bucket: s3.IBucket,
        dependencies: lambda_.ILayerVersion,
        imaging: lambda_.ILayerVersion,
        activity_table: dynamodb.ITableV2,
    ) -> None:
        super().__init__(scope, id)
        self._config = config
        self._activity_table = activity_table
        environment = {
            "DATASET_BUCKET": dataset_bucket.bucket_name,
            "ARTIFACTS_BUCKET": artifacts_bucket.bucket_name,
            "MODEL_PARAMETER_PREFIX": config.model_parameter_prefix,
            "ACTIVITY_TABLE": activity_table.table_name,
        }

        def function(name: str, handler: str, description: str, **kwargs) -> ProjectFunction:
            return ProjectFunction(self, name, config=config, package="batch", handler=f"batch.handler.{handler}",
                                   description=description, dependencies=dependencies, environment=environment, **kwargs)

        self.prepare = function("PrepareFunction", "prepare", "Checks a batch detection job and decides whether to start its model",
                                memory_mb=PREPARE_MEMORY_MB, timeout=PREPARE_TIMEOUT)
        # A child of the Map: up to BATCH_SIZE images, one call at a time, throttling backed off.
        self.detect = function("DetectFunction", "detect", "Detects garments in a batch of images of a batch detection job",
                               extra_layers=(imaging,), memory_mb=1024, timeout=Duration.minutes(15))
        self.merge = function("MergeFunction", "merge", "Merges a batch detection job's parts into results.jsonl and summary.json",
                              memory_mb=1024, timeout=Duration.minutes(15), ephemeral_storage_mb=4096)
        self.finish = function("FinishFunction", "finish", "Records why a batch detection job was refused or failed")
        self.release = function("ReleaseFunction", "release", "Releases a batch detection job's lease on its model and decides its stop")
        self._grant(dataset_bucket, artifacts_bucket, activity_table)

        self.log_group = logs.LogGroup(self, "Logs", retention=log_retention(config.log_retention_days), removal_policy=config.stateful_removal)
        self.state_machine = sfn.StateMachine(
            self, "StateMachine",
            definition_body=sfn.DefinitionBody.from_chainable(self._definition(dataset_bucket)),
            # A backstop: the start is polled a bounded number of times; 2,000,000 images at 4/s take
            # ~6 days. A job's lease on its model lasts as long: no execution outlives it.
            timeout=Duration.seconds(LEASE_SECONDS),
            tracing_enabled=True,
            logs=sfn.LogOptions(destination=self.log_group, level=sfn.LogLevel.ALL, include_execution_data=True),
            comment="fashion-pipeline: batch detection over a prefix of the dataset bucket's images/",
        )
        self._acknowledge_machine_role(dataset_bucket)
        self._request_rule(dataset_bucket)

    # -- the definition -----------------------------------------------------------------------------
    def _lambda(self, id: str, function: ProjectFunction, payload: dict | None, result_path: str) -> tasks.LambdaInvoke:
        task = tasks.LambdaInvoke(
            self, id, lambda_function=function.function, payload=sfn.TaskInput.from_object(payload) if payload is not None else None,
            payload_response_only=True, result_path=result_path, retry_on_service_exceptions=False,
        )
        task.add_retry(errors=TRANSIENT_LAMBDA_ERRORS, **RETRY)
        return task

    def _rekognition(self, id: str, action: str, parameters: dict, result_path: str | None, retry: dict = RETRY) -> tasks.CallAwsService:
        task = tasks.CallAwsService(
            self, id, service="rekognition", action=action, parameters=parameters, iam_resources=project_arns(),
            iam_action=f"rekognition:{action[0].upper()}{action[1:]}",
            result_path=result_path if result_path is not None else sfn.JsonPath.DISCARD,
        )
        task.add_retry(errors=TRANSIENT_REKOGNITION_ERRORS, **retry)
        return task

    def _error(self, id: str, error: str, cause_path: str, then: sfn.IChainable) -> sfn.Pass:
        """A Pass that states why the job fails, in the shape a Catch writes ($.error)."""
        return sfn.Pass(self, id, parameters={"Error": error, "Cause.$": cause_path}, result_path="$.error").next(then)

    def _definition(self, dataset_bucket: s3.IBucket) -> sfn.IChainable:
        failed = self._failure_path()
        prepare = self._lambda("Prepare job", self.prepare, {"input.$": "$$.Execution.Input", "execution.$": "$$.Execution.Id",
                                                             "started.$": "$$.Execution.StartTime"}, "$.job")
        prepare.add_catch(failed, errors=["States.ALL"], result_path="$.error")

        merge = self._lambda("Merge results", self.merge, {"state.$": "$"}, "$.summary")
        merge.add_catch(failed, errors=["States.ALL"], result_path="$.error")
        merge.next(sfn.Succeed(self, "Job finished", output_path="$.summary"))
        stop = self._rekognition("Stop model", "stopProjectVersion", {"ProjectVersionArn.$": f"{MODEL}.arn"}, None)
        # A stop that fails for good does not undo the results: the summary says so (the idle
        # auto-stop stops the model later), and the merge still runs.
        cleared = self._clear_release("Clear release", then=merge)
        stop.add_catch(cleared, errors=["States.ALL"], result_path="$.stop_error")
        stop.next(sfn.Pass(self, "Model stopped", parameters={"at.$": "$$.State.EnteredTime"}, result_path="$.stopped")).next(cleared)
        stop_or_not = sfn.Choice(self, "Stop model?").when(sfn.Condition.boolean_equals("$.release.stop", True), stop).otherwise(merge)
        release = self._release("", then=stop_or_not)

        detect = self._detect_map(dataset_bucket)
        detect.add_catch(failed, errors=["States.ALL"], result_path="$.error")
        detect.next(release)

        running = self._start_poll(then=detect, failed=failed)
        start = self._rekognition("Start model", "startProjectVersion",
                                  {"ProjectVersionArn.$": f"{MODEL}.arn", "MinInferenceUnits.$": f"{MODEL}.inference_units"}, None)
        start.add_catch(failed, errors=["States.ALL"], result_path="$.error")
        start.next(running)
        model = (sfn.Choice(self, "Start model first?")
                 .when(sfn.Condition.boolean_equals("$.job.start", True), start)
                 .when(sfn.Condition.boolean_equals("$.job.wait", True), running)
                 .otherwise(detect))
        action = (sfn.Choice(self, "Job action?")
                  .when(sfn.Condition.string_equals("$.job.action", "run"), model)
                  .when(sfn.Condition.string_equals("$.job.action", "refuse"), failed)
                  .otherwise(sfn.Succeed(self, "Not a job")))
        prepare.next(action)
        return prepare

    def _release(self, suffix: str, *, then: sfn.IChainable) -> sfn.IChainable:
        """Release model -> $.release {"stop", "reason", "others"}. A release is idempotent (one
        conditional write, batch.leases.release), so any failure is retried; one that fails for
        good (caught into $.release_error) drops the job's lease by itself and leaves the model
        running: stopping it could stop it under another job, and the idle auto-stop stops it
        once nothing uses it."""
        release = self._lambda(f"Release model{suffix}", self.release, {"job.$": "$.job"}, "$.release")
        release.add_retry(errors=["States.ALL"], interval=Duration.seconds(2), max_attempts=2, backoff_rate=2)
        # aws-sdk parameters take the SDK's member names, PascalCase: a string set is "Ss".
        drop = self._dynamodb_update(f"Drop lease{suffix}", {
            "UpdateExpression": DROP_UPDATE, "ExpressionAttributeNames": LEASE_NAMES,
            "ExpressionAttributeValues": {":lease": {"Ss.$": "States.Array($.job.lease)"}, ":one": {"N": "1"}},
        })
        fallback = sfn.Pass(self, f"Release failed{suffix}", parameters={
            "stop": False, "others": 0,
            "reason": "the release failed: the model is left running (the idle auto-stop stops it once unused, if idleStopMinutes is set)",
        }, result_path="$.release")
        release.add_catch(drop, errors=["States.ALL"], result_path="$.release_error")
        drop.add_catch(fallback, errors=["States.ALL"], result_path=sfn.JsonPath.DISCARD)
        drop.next(fallback)
        release.next(then)
        fallback.next(then)
        return release

    def _dynamodb_update(self, id: str, parameters: dict) -> tasks.CallAwsService:
        """An UpdateItem on the model's activity item (the API's activity table)."""
        task = tasks.CallAwsService(
            self, id, service="dynamodb", action="updateItem", iam_action="dynamodb:UpdateItem", iam_resources=[self._activity_table.table_arn],
            parameters={"TableName": self._activity_table.table_name, "Key": {"model": {"S.$": f"{MODEL}.arn"}}, **parameters},
            result_path=sfn.JsonPath.DISCARD,
        )
        task.add_retry(errors=TRANSIENT_DYNAMODB_ERRORS, **RETRY)
        return task

    def _clear_release(self, id: str, *, then: sfn.IChainable) -> sfn.IChainable:
        """Once the stop is called (or failed), the model is no longer "about to be stopped":
        remove the release marker that makes a joining job refuse (batch_leases.joining_refusal),
        if it is still this job's. A failed write only lets the marker expire by itself."""
        clear = self._dynamodb_update(id, {
            "UpdateExpression": "REMOVE #by, #at", "ConditionExpression": "#by = :me",
            "ExpressionAttributeNames": {"#by": RELEASED_BY, "#at": RELEASED_AT},
            "ExpressionAttributeValues": {":me": {"S.$": "$.job.execution"}},
        })
        clear.add_catch(then, errors=["States.ALL"], result_path=sfn.JsonPath.DISCARD)
        clear.next(then)
        return clear

    def _start_poll(self, *, then: sfn.IChainable, failed: sfn.IChainable) -> sfn.IChainable:
        """Wait -> describe -> RUNNING goes on, STARTING polls again (at most $.job.start_polls
        times), any other status fails the job naming it."""
        begin = sfn.Pass(self, "Start polling model", parameters={"count": 0, "limit.$": "$.job.start_polls"}, result_path="$.poll")
        wait = sfn.Wait(self, "Wait for model", time=sfn.WaitTime.seconds_path("$.job.poll_seconds"))
        describe = self._rekognition("Describe model", "describeProjectVersions",
                                     {"ProjectArn.$": f"{MODEL}.project_arn", "VersionNames.$": f"States.Array({MODEL}.version_name)"},
                                     "$.described", retry=POLL_RETRY)
        count = sfn.Pass(self, "Count model poll", parameters={"count.$": "States.MathAdd($.poll.count, 1)", "limit.$": "$.poll.limit"},
                         result_path="$.poll")
        # A transient error that outlasts the describe's retries counts as a poll without news.
        describe.add_catch(count, errors=TRANSIENT_REKOGNITION_ERRORS, result_path="$.poll_error")
        describe.add_catch(failed, errors=["States.ALL"], result_path="$.error")
        not_running = self._error("Model not running", "ModelNotRunning",
                                  f"States.Format('the model is {{}}, not RUNNING', {DESCRIBED_STATUS})", failed)
        # A job waiting for another job's start may look before that job's StartProjectVersion
        # lands: STOPPED is then a poll without news for it (still bounded by start_polls).
        status = (sfn.Choice(self, "Model status?")
                  .when(sfn.Condition.string_equals(DESCRIBED_STATUS, "RUNNING"), then)
                  .when(sfn.Condition.string_equals(DESCRIBED_STATUS, "STARTING"), count)
                  .when(sfn.Condition.and_(sfn.Condition.string_equals(DESCRIBED_STATUS, "STOPPED"),
                                           sfn.Condition.boolean_equals("$.job.start", False)), count)
                  .otherwise(not_running))
        described = sfn.Choice(self, "Model described?").when(sfn.Condition.is_present(DESCRIBED_STATUS), status).otherwise(count)
        timed_out = self._error("Model start timed out", "WaitTimedOut",
                                "States.Format('the model is still not RUNNING after {} polls', $.poll.count)", failed)
        begin.next(wait).next(describe).next(described)
        count.next(sfn.Choice(self, "Model out of time?")
                   .when(sfn.Condition.number_greater_than_equals_json_path("$.poll.count", "$.poll.limit"), timed_out)
                   .otherwise(wait))
        return begin

    def _detect_map(self, dataset_bucket: s3.IBucket) -> sfn.DistributedMap:
        images = sfn.DistributedMap(
            self, "Detect images",
            item_reader=sfn.S3ObjectsItemReader(bucket=dataset_bucket, prefix=sfn.JsonPath.string_at("$.job.source_prefix")),
            item_batcher=sfn.ItemBatcher(max_items_per_batch=BATCH_SIZE, max_input_bytes_per_batch=MAX_BATCH_INPUT_BYTES,
                                         batch_input={"job.$": "$.job"}),
            max_concurrency_path="$.job.concurrency",
            # Each child's {"n": k}: ~12 bytes per batch (fashion_pipeline.batch.BATCH_SIZE bounds the sum).
            result_path="$.batches",
            label=MAP_LABEL,
        )
        child = tasks.LambdaInvoke(self, "Detect batch", lambda_function=self.detect.function, payload_response_only=True,
                                   retry_on_service_exceptions=False)
        child.add_retry(errors=TRANSIENT_LAMBDA_ERRORS, **RETRY)
        images.item_processor(child)
        return images

    def _failure_path(self) -> sfn.IChainable:
        """Release the model if the job holds a lease it has not released, stop the model if the
        release says so and the job has not stopped it, record, fail. Each test of a member that
        may be absent is guarded by IsPresent in a Choice of its own (a missing path fails a
        Choice with States.Runtime)."""
        record = self._lambda("Record failure", self.finish,
                              {"input.$": "$$.Execution.Input", "execution.$": "$$.Execution.Id", "state.$": "$"}, "$.outcome")
        unrecorded = sfn.Fail(self, "Job failed (unrecorded)", error="BatchJobFailed", cause="the failure could not be recorded")
        record.add_catch(unrecorded, errors=["States.ALL"], result_path="$.record_error")
        record.next(sfn.Choice(self, "Refused?")
                    .when(sfn.Condition.string_equals("$.outcome.status", "refused"),
                          sfn.Fail(self, "Job refused", error="BatchJobRefused", cause_path="$.outcome.reason"))
                    .otherwise(sfn.Fail(self, "Job failed", error="BatchJobFailed", cause_path="$.outcome.reason")))
        stop = self._rekognition("Stop model after failure", "stopProjectVersion", {"ProjectVersionArn.$": f"{MODEL}.arn"}, None)
        cleared = self._clear_release("Clear release after failure", then=record)
        stop.add_catch(cleared, errors=["States.ALL"], result_path="$.stop_error")
        stop.next(sfn.Pass(self, "Model stopped after failure", parameters={"at.$": "$$.State.EnteredTime"}, result_path="$.stopped")).next(cleared)
        stop_or_not = (sfn.Choice(self, "Stop model after failure?")
                       .when(sfn.Condition.and_(sfn.Condition.boolean_equals("$.release.stop", True),
                                                sfn.Condition.not_(sfn.Condition.is_present("$.stopped"))), stop)
                       .otherwise(record))
        released = (sfn.Choice(self, "Released after failure?")
                    .when(sfn.Condition.is_present("$.release.stop"), stop_or_not)
                    .otherwise(record))
        release = self._release(" after failure", then=released)
        unreleased = (sfn.Choice(self, "Lease unreleased?")
                      .when(sfn.Condition.and_(sfn.Condition.is_string("$.job.lease"), sfn.Condition.not_(sfn.Condition.is_present("$.release"))),
                            release)
                      .otherwise(released))
        # A job that holds a lease has a model (prepare takes the lease last); the guards say so.
        holds = [sfn.Condition.is_present(path) for path in ("$.job.lease", "$.job.start", "$.job.execution", f"{MODEL}.arn")]
        return (sfn.Choice(self, "Release model after failure?")
                .when(sfn.Condition.and_(*holds), unreleased)
                .otherwise(record))

    # -- the rule -------------------------------------------------------------------------------------
    def _request_rule(self, dataset_bucket: s3.IBucket) -> None:
        """An upload of ``batch/<name>.json`` starts a job. EventBridge's wildcard ``*`` matches any
        characters, slashes included ("Wildcard matching", Amazon EventBridge content filtering:
        https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-create-pattern-operators.html),
        so ``batch/a/b.json`` matches too; Prepare ends that execution as no job, before it reads anything."""
        rule = events.Rule(
            self, "BatchRequestRule",
            description="Starts a batch detection job when batch/<job>.json is uploaded",
            event_pattern=events.EventPattern(
                source=["aws.s3"], detail_type=["Object Created"],
                detail={"bucket": {"name": [dataset_bucket.bucket_name]},
                        "object": {"key": [{"wildcard": f"{BATCH_PREFIX}*{BATCH_REQUEST_SUFFIX}"}]}},
            ),
        )
        rule.add_target(targets.SfnStateMachine(self.state_machine))

    # -- grants -----------------------------------------------------------------------------------------
    def _grant(self, dataset_bucket: s3.IBucket, artifacts_bucket: s3.IBucket, activity_table: dynamodb.ITableV2) -> None:
        batch = f"{BATCH_PREFIX}*"
        images = f"{IMAGES_PREFIX}*"
        # Prepare: the request, the dataset's pointer and model, and a count of the prefix.
        iam.Grant.add_to_principal(grantee=self.prepare.function, actions=["s3:GetObject"], resource_arns=[dataset_bucket.arn_for_objects(batch)])
        self.prepare.function.add_to_role_policy(iam.PolicyStatement(
            actions=["s3:ListBucket"], resources=[dataset_bucket.bucket_arn], conditions={"StringLike": {"s3:prefix": [images]}}))
        self.prepare.function.add_to_role_policy(iam.PolicyStatement(actions=["ssm:GetParameter"], resources=pointer_arns(self._config.model_parameter_prefix)))
        self.prepare.function.add_to_role_policy(iam.PolicyStatement(actions=["rekognition:DescribeProjectVersions"], resources=project_arns()))
        # Detect: the images (headers, DetectCustomLabels' S3Object read as its caller, the
        # drawing), the model, its parts and rendered images, and the API's activity record.
        iam.Grant.add_to_principal(grantee=self.detect.function, actions=["s3:GetObject"], resource_arns=[dataset_bucket.arn_for_objects(images)])
        self.detect.function.add_to_role_policy(iam.PolicyStatement(actions=["rekognition:DetectCustomLabels"], resources=project_arns()))
        iam.Grant.add_to_principal(grantee=self.detect.function, actions=["s3:PutObject"], resource_arns=[artifacts_bucket.arn_for_objects(batch)])
        iam.Grant.add_to_principal(grantee=self.detect.function, actions=["dynamodb:UpdateItem"], resource_arns=[activity_table.table_arn])
        # Merge: lists and reads the parts, writes the results and the summary; Finish the summary.
        self.merge.function.add_to_role_policy(iam.PolicyStatement(
            actions=["s3:ListBucket"], resources=[artifacts_bucket.bucket_arn], conditions={"StringLike": {"s3:prefix": [batch]}}))
        iam.Grant.add_to_principal(grantee=self.merge.function, actions=["s3:GetObject", "s3:PutObject"],
                                   resource_arns=[artifacts_bucket.arn_for_objects(batch)])
        iam.Grant.add_to_principal(grantee=self.finish.function, actions=["s3:PutObject"], resource_arns=[artifacts_bucket.arn_for_objects(batch)])
        # Leases on the model's activity item: Prepare takes (or drops) the job's and claims a
        # start; Release drops it, reads the item again when its conditional write loses.
        iam.Grant.add_to_principal(grantee=self.prepare.function, actions=["dynamodb:UpdateItem"], resource_arns=[activity_table.table_arn])
        iam.Grant.add_to_principal(grantee=self.release.function, actions=["dynamodb:UpdateItem", "dynamodb:GetItem"],
                                   resource_arns=[activity_table.table_arn])

        why = "the grant is limited to this prefix and to the object actions of the step."
        for function, bucket, pattern in ((self.prepare, dataset_bucket, batch), (self.detect, dataset_bucket, images),
                                          (self.detect, artifacts_bucket, batch), (self.merge, artifacts_bucket, batch),
                                          (self.finish, artifacts_bucket, batch)):
            acknowledge(function.role, object_wildcard(bucket, pattern), f"Jobs and their images are named at run time, so the step needs every key under '{pattern}'; {why}")
        for function in (self.prepare, self.detect):
            acknowledge_projects(function.role)
        acknowledge_pointers(self.prepare.role, self._config.model_parameter_prefix, "Prepare reads the job's dataset's pointer only.")

    def _acknowledge_machine_role(self, dataset_bucket: s3.IBucket) -> None:
        role = self.state_machine.role
        acknowledge(role, "AwsSolutions-IAM5[Resource::*]",
                    "X-Ray tracing (xray:PutTraceSegments, PutTelemetryRecords, GetSampling*) and CloudWatch Logs "
                    "delivery have no resource-level permissions, so CDK grants them on '*'.")
        acknowledge_projects(role)
        acknowledge_distributed_map(self.state_machine, MAP_LABEL)
        stack = Stack.of(self)
        for function in (self.prepare, self.detect, self.merge, self.finish, self.release):
            logical_id = stack.get_logical_id(function.function.node.default_child)
            acknowledge(role, f"AwsSolutions-IAM5[Resource::<{logical_id}.Arn>:*]",
                        "CDK grants lambda:InvokeFunction on the function and its versions (ARN:*); "
                        "the grant names this one batch function.")
