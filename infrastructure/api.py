"""The inference API: API Gateway (REST) -> inference Lambda -> each dataset's live model.

Every method needs IAM (SigV4) by default; ``apiAuth: apiKey`` switches the public routes
to an API key with a usage plan, while starting and stopping the model always needs IAM.
A scheduled function stops a model that has served no request for ``idleStopMinutes``:
a running model bills by the hour whether it is used or not.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infrastructure.config import PipelineConfig
from infrastructure.functions import ProjectFunction, log_retention
from infrastructure.nag import acknowledge
from fashion_pipeline.layout import PROJECT_PREFIX
from infrastructure.run_time_arns import acknowledge_projects, pointer_path_arn, project_arns

# API Gateway hands these request bodies to Lambda base64-encoded, and turns a base64
# Lambda answer back into bytes when the client accepts one of them.
BINARY_MEDIA_TYPES = ["image/png", "image/jpeg", "application/octet-stream"]
AUTOSTOP_EVERY = Duration.minutes(5)
POINTER_TTL_SECONDS = 15


class InferenceApi(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        config: PipelineConfig,
        dependencies: lambda_.ILayerVersion,
        imaging: lambda_.ILayerVersion,
        dataset_bucket_name: str,
    ) -> None:
        super().__init__(scope, id)
        removal = config.stateful_removal
        self.activity_table = dynamodb.TableV2(
            self,
            "ModelActivity",
            partition_key=dynamodb.Attribute(name="model", type=dynamodb.AttributeType.STRING),
            billing=dynamodb.Billing.on_demand(),
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(point_in_time_recovery_enabled=True),
            removal_policy=removal,
        )
        self.inference = ProjectFunction(
            self, "Inference", config=config, package="inference", handler="inference.handler.handler",
            description="Detects and outlines garments with the deployed Custom Labels model",
            dependencies=dependencies, extra_layers=(imaging,), memory_mb=1024, timeout=Duration.seconds(29),
            environment={
                "MODEL_PARAMETER_PREFIX": config.model_parameter_prefix,
                "DEFAULT_DATASET": config.default_dataset or "",
                "DATASET_BUCKET": dataset_bucket_name,
                "ACTIVITY_TABLE": self.activity_table.table_name,
                "AUTO_START": "true" if config.auto_start_on_demand else "false",
                "CORS_ORIGIN": config.cors_origin or "",
                # How soon a moved pointer (a deployment, a roll-back) reaches every container: one
                # GetParametersByPath per container per 15 s stays far below Parameter Store's
                # default 40 transactions per second for Get* calls (Systems Manager endpoints and
                # quotas, https://docs.aws.amazon.com/general/latest/gr/ssm.html).
                "POINTER_TTL_SECONDS": str(POINTER_TTL_SECONDS),
            },
        )
        self.autostop = ProjectFunction(
            self, "AutoStop", config=config, package="inference", handler="inference.autostop.handler",
            description="Stops the deployed model after a period without requests",
            dependencies=dependencies, timeout=Duration.seconds(60),
            environment={
                "MODEL_PARAMETER_PREFIX": config.model_parameter_prefix,
                "ACTIVITY_TABLE": self.activity_table.table_name,
                "IDLE_MINUTES": str(config.idle_stop_minutes),
            },
        )
        if config.idle_stop_minutes:
            events.Rule(self, "AutoStopSchedule", description="Checks whether the pipeline's models are idle",
                        schedule=events.Schedule.rate(AUTOSTOP_EVERY)).add_target(targets.LambdaFunction(self.autostop.function))

        self._grant(config.model_parameter_prefix)
        self.api = self._rest_api(config)

    def _grant(self, pointer_prefix: str) -> None:
        for function, actions in (
            (self.inference, ["rekognition:DetectCustomLabels", "rekognition:DescribeProjectVersions",
                              "rekognition:StartProjectVersion", "rekognition:StopProjectVersion"]),
            (self.autostop, ["rekognition:DescribeProjectVersions", "rekognition:StopProjectVersion"]),
        ):
            # Every dataset's pointer in one call (non-recursive): the path, read-only.
            function.role.add_to_principal_policy(iam.PolicyStatement(actions=["ssm:GetParametersByPath"], resources=[pointer_path_arn(pointer_prefix)]))
            function.role.add_to_principal_policy(iam.PolicyStatement(actions=actions, resources=project_arns()))
            acknowledge_projects(function.role, "The API serves the deployed model versions; the running ones are described "
                                                "and may be stopped, with the listed model actions only.")
            # Its own policy, so that its '*' is acknowledged here and not by the role's X-Ray one.
            listing = iam.Policy(function, "ListProjects", roles=[function.role], statements=[
                iam.PolicyStatement(actions=["rekognition:DescribeProjects"], resources=["*"])])
            acknowledge(listing, "AwsSolutions-IAM5[Resource::*]",
                        "rekognition:DescribeProjects has no resource-level permission; it finds the pipeline's "
                        f"'{PROJECT_PREFIX}' projects, whose models are then described (and idle ones stopped by "
                        "the auto-stop) under the project-scoped grant above.")
        self.activity_table.grant_read_write_data(self.inference.role)
        self.activity_table.grant_read_write_data(self.autostop.role)  # reads every model's record, notes what it saw

    def _rest_api(self, config: PipelineConfig) -> apigw.RestApi:
        access_logs = logs.LogGroup(self, "AccessLogs", retention=log_retention(config.log_retention_days),
                                    removal_policy=config.stateful_removal)
        iam_auth = config.api_auth == "iam"
        cors = None
        if config.cors_origin:
            cors = apigw.CorsOptions(allow_origins=[config.cors_origin], allow_methods=["GET", "POST", "OPTIONS"],
                                     allow_headers=["Content-Type", "Accept", "Authorization", "X-Api-Key", "X-Amz-Date", "X-Amz-Security-Token"])
        api = apigw.RestApi(
            self, "RestApi",
            rest_api_name="fashion-pipeline",
            description="Detects and outlines garments with the deployed Rekognition Custom Labels model",
            binary_media_types=BINARY_MEDIA_TYPES,
            endpoint_types=[apigw.EndpointType.REGIONAL],
            cloud_watch_role=True,
            cloud_watch_role_removal_policy=RemovalPolicy.DESTROY,
            default_cors_preflight_options=cors,
            default_method_options=apigw.MethodOptions(
                authorization_type=apigw.AuthorizationType.IAM if iam_auth else apigw.AuthorizationType.NONE,
                api_key_required=not iam_auth,
            ),
            deploy_options=apigw.StageOptions(
                stage_name="v1",
                throttling_rate_limit=config.api_throttle_rate,
                throttling_burst_limit=config.api_throttle_burst,
                tracing_enabled=True,
                logging_level=apigw.MethodLoggingLevel.ERROR,
                metrics_enabled=True,
                access_log_destination=apigw.LogGroupLogDestination(access_logs),
                access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
                    caller=True, http_method=True, ip=True, protocol=True, request_time=True,
                    resource_path=True, response_length=True, status=True, user=True),
            ),
        )
        validator = api.add_request_validator("Validator", validate_request_parameters=True, validate_request_body=True)
        integration = apigw.LambdaIntegration(self.inference.function)
        public = apigw.MethodOptions(request_validator=validator)
        admin = apigw.MethodOptions(request_validator=validator, authorization_type=apigw.AuthorizationType.IAM, api_key_required=False)
        api.root.add_resource("detections").add_method("POST", integration, **_kwargs(public))
        api.root.add_resource("openapi.json").add_method("GET", integration, **_kwargs(public))
        api.root.add_resource("models").add_method("GET", integration, **_kwargs(public))
        model = api.root.add_resource("model")
        model.add_method("GET", integration, **_kwargs(public))
        model.add_resource("start").add_method("POST", integration, **_kwargs(admin))
        model.add_resource("stop").add_method("POST", integration, **_kwargs(admin))

        if not iam_auth:
            key = api.add_api_key("ApiKey", description="fashion-pipeline inference API key")
            plan = api.add_usage_plan("UsagePlan", throttle=apigw.ThrottleSettings(
                rate_limit=config.api_throttle_rate, burst_limit=config.api_throttle_burst))
            plan.add_api_key(key)
            plan.add_api_stage(stage=api.deployment_stage)
            self.api_key = key

        acknowledge(api, "AwsSolutions-APIG3",
                    "No WAF web ACL by default: every method needs IAM (or an API key), the stage is throttled, "
                    "and a web ACL bills per request; attach one to the stage where the API is public.")
        acknowledge(api, "AwsSolutions-COG4",
                    "Callers are AWS principals (SigV4, the default) or API-key holders, not Cognito users.")
        if cors is not None:
            acknowledge(api, "AwsSolutions-APIG4",
                        "Only the CORS preflight (OPTIONS) methods are open: browsers send them without credentials.")
        if not iam_auth:
            acknowledge(api, "AwsSolutions-APIG4",
                        "apiAuth is 'apiKey': the public routes require an API key and its usage plan; "
                        "starting and stopping the model still require IAM.")
        acknowledge(api, "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs]",
                    "API Gateway's account-level logging role uses the AWS-managed policy made for it.")
        return api


def _kwargs(options: apigw.MethodOptions) -> dict:
    return {k: v for k, v in {
        "request_validator": options.request_validator,
        "authorization_type": options.authorization_type,
        "api_key_required": options.api_key_required,
    }.items() if v is not None}
