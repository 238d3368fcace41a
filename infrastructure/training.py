"""The training workflow: fragments -> manifests -> Custom Labels model -> running endpoint.

A Step Functions state machine. Lambda tasks do what needs logic (prepare, assemble,
evaluate, finish); every Rekognition, SSM, SNS and EventBridge call is a direct SDK
integration. Every task retries throttling and transient errors with backoff, and every
failure is caught into one path that records the reason, frees the dataset and notifies.

Re-training: one Custom Labels project per dataset (``fashion-pipeline-<dataset>``). A
project holds one TRAIN and one TEST dataset, so each run deletes the project's datasets
and re-creates them from the new manifests; models trained earlier keep their own copy of
the data and stay usable. Each run is a new project version (model), named after the run.
"""

from __future__ import annotations

from aws_cdk import Aws, Duration, RemovalPolicy, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_ssm as ssm
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from infrastructure.config import PipelineConfig
from infrastructure.functions import ProjectFunction, log_retention
from infrastructure.nag import acknowledge

PROJECT_PREFIX = "fashion-pipeline-"
REQUESTS_PREFIX = "requests/"
EVENT_SOURCE = "fashion-pipeline"
NO_MODEL = '{"status": "none"}'

# Step Functions names SDK errors "<Service>.<Exception>", appending "Exception" if absent.
TRANSIENT_REKOGNITION_ERRORS = [
    "Rekognition.ThrottlingException",
    "Rekognition.ProvisionedThroughputExceededException",
    "Rekognition.LimitExceededException",
    "Rekognition.ServiceUnavailableException",
    "Rekognition.InternalServerErrorException",
]
TRANSIENT_ERRORS = TRANSIENT_REKOGNITION_ERRORS + [
    "Lambda.TooManyRequestsException",
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Ssm.ThrottlingException",
    "Ssm.InternalServerErrorException",
    "Sns.ThrottledException",
    "Sns.InternalErrorException",
]


class TrainingWorkflow(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        config: PipelineConfig,
        dataset_bucket: s3.IBucket,
        artifacts_bucket: s3.IBucket,
        dependencies: lambda_.ILayerVersion,
        topic: sns.ITopic,
    ) -> None:
        super().__init__(scope, id)
        removal = config.stateful_removal
        self.topic = topic

        self.lock_table = dynamodb.TableV2(
            self,
            "RunLocks",
            partition_key=dynamodb.Attribute(name="dataset", type=dynamodb.AttributeType.STRING),
            billing=dynamodb.Billing.on_demand(),
            time_to_live_attribute="expires_at",
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(point_in_time_recovery_enabled=True),
            removal_policy=removal,
        )
        self.model_parameter = ssm.StringParameter(
            self,
            "CurrentModel",
            parameter_name=config.model_parameter_name,
            description="The deployed Custom Labels model the inference API uses (JSON), written by the training workflow",
            string_value=NO_MODEL,
        )

        environment = {
            "DATASET_BUCKET": dataset_bucket.bucket_name,
            "ARTIFACTS_BUCKET": artifacts_bucket.bucket_name,
            "LOCK_TABLE": self.lock_table.table_name,
            "TRAINING_DEFAULTS": config.training_defaults_json,
        }

        def function(name: str, handler: str, description: str, **kwargs) -> lambda_.Function:
            built = ProjectFunction(
                self, name, config=config, package="workflow", handler=f"workflow.handler.{handler}",
                description=description, dependencies=dependencies, environment=environment, **kwargs,
            )
            return built.function

        self.prepare_function = function("PrepareFunction", "prepare", "Validates a training request and takes the dataset's run lease")
        self.assemble_function = function(
            "Assemble", "assemble", "Assembles a dataset's fragments into train/test manifests",
            memory_mb=config.assembler_memory_mb, timeout=Duration.minutes(15), ephemeral_storage_mb=4096,
        )
        self.evaluate_function = function("EvaluateFunction", "evaluate", "Writes the evaluation report and takes the deploy decision")
        self.finish_function = function("FinishFunction", "finish", "Records a run's outcome and frees the dataset's lease")

        self.lock_table.grant_read_write_data(self.prepare_function)
        self.lock_table.grant_read_write_data(self.finish_function)

        self.state_machine = self._state_machine(config, removal)
        self._request_rule(dataset_bucket)

    # -- helpers ------------------------------------------------------------------------------
    def _lambda(self, id: str, function: lambda_.IFunction, payload: dict, result_path: str) -> tasks.LambdaInvoke:
        task = tasks.LambdaInvoke(
            self, id, lambda_function=function, payload=sfn.TaskInput.from_object(payload),
            payload_response_only=True, result_path=result_path, retry_on_service_exceptions=False,
        )
        return self._resilient(task)

    def _sdk(self, id: str, action: str, parameters: dict, *, result_selector: dict | None = None,
             result_path: str | None = None, resources: list[str], service: str = "rekognition",
             iam_action: str | None = None) -> tasks.CallAwsService:
        task = tasks.CallAwsService(
            self, id, service=service, action=action, parameters=parameters, iam_resources=resources,
            # IAM action names are case-insensitive; written as AWS documents them.
            iam_action=iam_action or f"{service}:{action[0].upper()}{action[1:]}", result_selector=result_selector,
            result_path=result_path if result_path is not None else sfn.JsonPath.DISCARD,
        )
        return self._resilient(task)

    def _resilient(self, task):
        task.add_retry(errors=TRANSIENT_ERRORS, interval=Duration.seconds(1), backoff_rate=2.0, max_attempts=6,
                       jitter_strategy=sfn.JitterType.FULL)
        self._tasks.append(task)
        return task

    # -- the state machine -------------------------------------------------------------------
    def _state_machine(self, config: PipelineConfig, removal: RemovalPolicy) -> sfn.StateMachine:
        self._tasks: list = []
        project_arns = [
            f"arn:{Aws.PARTITION}:rekognition:{Aws.REGION}:{Aws.ACCOUNT_ID}:project/{PROJECT_PREFIX}*",
        ]
        run = "$.run"

        prepare = self._lambda("Prepare", self.prepare_function, {"input.$": "$$.Execution.Input", "execution.$": "$$.Execution.Id"}, "$.run")
        assemble = self._lambda("Assemble manifests", self.assemble_function, {"run.$": run}, "$.assembly")

        find_project = self._sdk(
            "Find project", "describeProjects", {"ProjectNames.$": "States.Array($.run.project_name)"},
            result_selector={"projects.$": "$.ProjectDescriptions"}, result_path="$.lookup",
            # DescribeProjects has no resource-level permission; the others are scoped below.
            resources=["*"],
        )
        use_project = sfn.Pass(self, "Use existing project", parameters={
            "arn.$": "$.lookup.projects[0].ProjectArn", "datasets.$": "$.lookup.projects[0].Datasets"}, result_path="$.project")
        create_project = self._sdk(
            "Create project", "createProject", {"ProjectName.$": "$.run.project_name"},
            result_selector={"arn.$": "$.ProjectArn", "datasets": []}, result_path="$.project", resources=project_arns,
        )
        delete_datasets = sfn.Map(self, "Delete previous datasets", items_path="$.project.datasets", result_path=sfn.JsonPath.DISCARD, max_concurrency=2)
        delete_one = self._sdk("Delete dataset", "deleteDataset", {"DatasetArn.$": "$.DatasetArn"}, resources=project_arns)
        self._tasks.remove(delete_one)  # a state inside a Map cannot catch into the outer machine
        delete_datasets.item_processor(delete_one)
        self._tasks.append(delete_datasets)

        def create_dataset(kind: str, manifest_path: str) -> tasks.CallAwsService:
            task = self._sdk(
                f"Create {kind.lower()} dataset", "createDataset",
                {"ProjectArn.$": "$.project.arn", "DatasetType": kind, "DatasetSource": {"GroundTruthManifest": {
                    "S3Object": {"Bucket.$": "$.run.artifacts_bucket", "Name.$": manifest_path}}}},
                result_selector={"arn.$": "$.DatasetArn"}, result_path=f"$.datasets.{kind.lower()}", resources=project_arns,
            )
            # A dataset being deleted still occupies its slot for a moment.
            task.add_retry(errors=["Rekognition.ResourceInUseException", "Rekognition.ResourceAlreadyExistsException"],
                           interval=Duration.seconds(5), backoff_rate=2.0, max_attempts=5)
            return task

        failed = self._failure_path()

        def wait_for_dataset(kind: str) -> tuple[sfn.IChainable, sfn.INextable]:
            wait = sfn.Wait(self, f"Wait for {kind} dataset", time=sfn.WaitTime.seconds_path("$.run.options.start_poll_seconds"))
            describe = self._sdk(
                f"Describe {kind} dataset", "describeDataset", {"DatasetArn.$": f"$.datasets.{kind}.arn"},
                result_selector={"status.$": "$.DatasetDescription.Status", "message.$": "$.DatasetDescription.StatusMessage"},
                result_path=f"$.datasets.{kind}.state", resources=project_arns,
            )
            broken = sfn.Pass(self, f"{kind.capitalize()} dataset failed", parameters={
                "Error": "DatasetCreationFailed", "Cause.$": f"States.Format('{kind} dataset: {{}}', $.datasets.{kind}.state.message)"}, result_path="$.error")
            broken.next(failed)
            done = sfn.Pass(self, f"{kind.capitalize()} dataset ready")
            check = (sfn.Choice(self, f"{kind.capitalize()} dataset status?")
                     .when(sfn.Condition.string_equals(f"$.datasets.{kind}.state.status", "CREATE_COMPLETE"), done)
                     .when(sfn.Condition.string_equals(f"$.datasets.{kind}.state.status", "CREATE_FAILED"), broken)
                     .otherwise(wait))
            wait.next(describe)
            describe.next(check)
            return wait, done

        train_wait, train_done = wait_for_dataset("train")
        test_wait, test_done = wait_for_dataset("test")

        create_version = self._sdk(
            "Create project version", "createProjectVersion",
            {"ProjectArn.$": "$.project.arn", "VersionName.$": "$.run.version_name",
             "OutputConfig": {"S3Bucket.$": "$.run.artifacts_bucket", "S3KeyPrefix.$": "States.Format('{}output/', $.run.prefix)"},
             "Tags": {"fashion-pipeline:dataset.$": "$.run.dataset"}},
            result_selector={"arn.$": "$.ProjectVersionArn"}, result_path="$.model", resources=project_arns,
        )
        start_polling = sfn.Pass(self, "Start polling", result=sfn.Result.from_object({"count": 0}), result_path="$.poll")
        wait_training = sfn.Wait(self, "Wait for training", time=sfn.WaitTime.seconds_path("$.run.options.poll_seconds"))
        describe_version = self._sdk(
            "Describe training", "describeProjectVersions",
            {"ProjectArn.$": "$.project.arn", "VersionNames.$": "States.Array($.run.version_name)"},
            result_selector={"description.$": "$.ProjectVersionDescriptions[0]"}, result_path="$.training", resources=project_arns,
        )
        count_poll = sfn.Pass(self, "Count poll", parameters={"count.$": "States.MathAdd($.poll.count, 1)"}, result_path="$.poll")
        training_failed = sfn.Pass(self, "Training failed", parameters={
            "Error": "TrainingFailed", "Cause.$": "$.training.description.StatusMessage"}, result_path="$.error")
        training_failed.next(failed)
        timed_out = sfn.Pass(self, "Training timed out", parameters={
            "Error": "TrainingTimedOut", "Cause.$": "States.Format('training not finished after {} polls', $.poll.count)"}, result_path="$.error")
        timed_out.next(failed)

        evaluate = self._lambda("Evaluate", self.evaluate_function, {"run.$": run, "version.$": "$.training.description"}, "$.evaluation")

        start_model = self._sdk(
            "Start model", "startProjectVersion",
            {"ProjectVersionArn.$": "$.model.arn", "MinInferenceUnits.$": "$.run.options.inference_units"}, resources=project_arns,
        )
        wait_start = sfn.Wait(self, "Wait for model", time=sfn.WaitTime.seconds_path("$.run.options.start_poll_seconds"))
        describe_model = self._sdk(
            "Describe model", "describeProjectVersions",
            {"ProjectArn.$": "$.project.arn", "VersionNames.$": "States.Array($.run.version_name)"},
            result_selector={"status.$": "$.ProjectVersionDescriptions[0].Status", "message.$": "$.ProjectVersionDescriptions[0].StatusMessage"},
            result_path="$.deployment", resources=project_arns,
        )
        deploy_failed = sfn.Pass(self, "Deployment failed", parameters={
            "Error": "DeploymentFailed", "Cause.$": "$.deployment.message"}, result_path="$.error")
        deploy_failed.next(failed)
        pointer = sfn.Pass(self, "Describe current model", parameters={
            "project_version_arn.$": "$.model.arn", "project_arn.$": "$.project.arn", "version_name.$": "$.run.version_name",
            "dataset.$": "$.run.dataset", "f1.$": "$.evaluation.f1", "inference_units.$": "$.run.options.inference_units",
            "deployed_at.$": "$$.State.EnteredTime", "status": "RUNNING"}, result_path="$.pointer")
        publish = self._sdk(
            "Publish current model", "putParameter",
            {"Name": self.model_parameter.parameter_name, "Type": "String", "Overwrite": True, "Value.$": "States.JsonToString($.pointer)"},
            service="ssm", resources=[self.model_parameter.parameter_arn],
        )

        finish_ok = self._lambda("Record success", self.finish_function, {"outcome": "succeeded", "state.$": "$"}, "$.notification")
        finish_skip = self._lambda("Record not deployed", self.finish_function, {"outcome": "not_deployed", "state.$": "$"}, "$.notification")
        notify = self._notify("Notify")
        outcome = (sfn.Choice(self, "Outcome?")
                   .when(sfn.Condition.string_equals("$.notification.message.status", "failed"),
                         sfn.Fail(self, "Run failed", error="TrainingRunFailed", cause_path="$.notification.message.reason"))
                   .otherwise(sfn.Succeed(self, "Run finished", output_path="$.notification.message")))
        notify.next(outcome)
        self._finish_failed.next(self._notify_failed)
        self._notify_failed.next(outcome)

        # -- wiring --------------------------------------------------------------------------
        prepare.next(assemble).next(find_project).next(
            sfn.Choice(self, "Project exists?")
            .when(sfn.Condition.is_present("$.lookup.projects[0]"), use_project)
            .otherwise(create_project))
        use_project.next(delete_datasets)
        create_project.next(delete_datasets)
        delete_datasets.next(create_dataset("TRAIN", "$.assembly.train_manifest")).next(
            create_dataset("TEST", "$.assembly.test_manifest")).next(train_wait)
        train_done.next(test_wait)
        test_done.next(create_version).next(start_polling).next(wait_training)
        wait_training.next(describe_version).next(
            sfn.Choice(self, "Training status?")
            .when(sfn.Condition.string_equals("$.training.description.Status", "TRAINING_COMPLETED"), evaluate)
            .when(sfn.Condition.string_equals("$.training.description.Status", "TRAINING_FAILED"), training_failed)
            .otherwise(count_poll))
        count_poll.next(
            sfn.Choice(self, "Out of time?")
            .when(sfn.Condition.number_greater_than_equals_json_path("$.poll.count", "$.run.max_polls"), timed_out)
            .otherwise(wait_training))
        evaluate.next(
            sfn.Choice(self, "Deploy?")
            .when(sfn.Condition.boolean_equals("$.evaluation.deploy", True), start_model)
            .otherwise(finish_skip))
        finish_skip.next(notify)
        start_model.next(wait_start).next(describe_model).next(
            sfn.Choice(self, "Model status?")
            .when(sfn.Condition.string_equals("$.deployment.status", "RUNNING"), pointer)
            .when(sfn.Condition.string_equals("$.deployment.status", "FAILED"), deploy_failed)
            .otherwise(wait_start))
        pointer.next(publish).next(finish_ok).next(notify)

        for task in self._tasks:
            if task not in (self._finish_failed,) and task not in self._notify_tasks:
                task.add_catch(failed, errors=["States.ALL"], result_path="$.error")

        log_group = logs.LogGroup(self, "Logs", retention=log_retention(config.log_retention_days), removal_policy=removal)
        machine = sfn.StateMachine(
            self, "StateMachine",
            definition_body=sfn.DefinitionBody.from_chainable(prepare),
            timeout=Duration.hours(config.training_timeout_hours + 24),
            tracing_enabled=True,
            logs=sfn.LogOptions(destination=log_group, level=sfn.LogLevel.ALL, include_execution_data=True),
            comment="fashion-pipeline: assemble manifests, train, evaluate and deploy a Custom Labels model",
        )
        self.log_group = log_group
        role = machine.role
        acknowledge(role, "AwsSolutions-IAM5[Resource::*]",
                    "X-Ray tracing (xray:PutTraceSegments, PutTelemetryRecords, GetSampling*) and "
                    "rekognition:DescribeProjects have no resource-level permissions; every other "
                    "Rekognition action is limited to this pipeline's projects.")
        acknowledge(role, f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:rekognition:<AWS::Region>:<AWS::AccountId>:project/{PROJECT_PREFIX}*]",
                    "Projects, datasets and model versions are created per dataset and per run, so their ARNs "
                    f"are known only at run time; the grant covers this pipeline's '{PROJECT_PREFIX}' projects only.")
        acknowledge(role, "AwsSolutions-IAM5[Action::kms:GenerateDataKey*]",
                    "Publishing to the encrypted notification topic needs a data key from its key; the grant "
                    "is on that one key.")
        for function in (self.prepare_function, self.assemble_function, self.evaluate_function, self.finish_function):
            logical_id = Stack.of(self).get_logical_id(function.node.default_child)
            acknowledge(role, f"AwsSolutions-IAM5[Resource::<{logical_id}.Arn>:*]",
                        "CDK grants lambda:InvokeFunction on the function and its versions (ARN:*); "
                        "the grant names this one workflow function.")
        return machine

    def _failure_path(self) -> sfn.IChainable:
        """One failure handler for every path: record, free the dataset, then notify."""
        self._notify_tasks: list = []
        self._finish_failed = self._lambda("Record failure", self.finish_function, {"outcome": "failed", "state.$": "$"}, "$.notification")
        self._notify_failed = self._notify("Notify failure")
        return self._finish_failed

    def _notify(self, id: str) -> sfn.IChainable:
        publish = tasks.SnsPublish(
            self, f"{id} by email", topic=self.topic, subject=sfn.JsonPath.string_at("$.notification.subject"),
            message=sfn.TaskInput.from_json_path_at("States.JsonToString($.notification.message)"), result_path=sfn.JsonPath.DISCARD,
        )
        event = tasks.EventBridgePutEvents(
            self, f"{id} on EventBridge", entries=[tasks.EventBridgePutEventsEntry(
                detail=sfn.TaskInput.from_json_path_at("$.notification.message"),
                detail_type=sfn.JsonPath.format("Training run {}", sfn.JsonPath.string_at("$.notification.message.status")),
                source=EVENT_SOURCE)], result_path=sfn.JsonPath.DISCARD,
        )
        for task in (publish, event):
            task.add_retry(errors=TRANSIENT_ERRORS + ["States.TaskFailed"], interval=Duration.seconds(2), backoff_rate=2.0, max_attempts=3)
            self._notify_tasks.append(task)
        # A notification that cannot be sent must not turn a finished run into a failed one.
        chain = sfn.Pass(self, f"{id} start")
        after = sfn.Pass(self, f"{id} done")
        publish.add_catch(event, result_path="$.notify_error")
        event.add_catch(after, result_path="$.notify_error")
        chain.next(publish).next(event).next(after)
        return sfn.Chain.custom(chain, [after], after)

    def _request_rule(self, dataset_bucket: s3.IBucket) -> None:
        """Uploading ``requests/<dataset>.json`` to the dataset bucket starts a run."""
        rule = events.Rule(
            self, "TrainingRequestRule",
            description="Starts a training run when requests/<dataset>.json is uploaded",
            event_pattern=events.EventPattern(
                source=["aws.s3"], detail_type=["Object Created"],
                detail={"bucket": {"name": [dataset_bucket.bucket_name]}, "object": {"key": [{"prefix": REQUESTS_PREFIX}]}},
            ),
        )
        rule.add_target(targets.SfnStateMachine(self.state_machine))
