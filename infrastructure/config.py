"""Deployment configuration, read from the CDK context key ``fashion-pipeline:config``.

Defaults live in cdk.json (and, identically, in ``PipelineConfig`` below); any subset of keys
may be overridden per deployment, e.g.
``cdk deploy -c 'fashion-pipeline:config={"removalPolicy": "destroy"}'`` (app.py merges the
override over cdk.json, so keys left out keep their cdk.json values). Validation happens
before any construct is created so that a typo fails synthesis immediately with the offending
key in the message, instead of surfacing as a CloudFormation rollback minutes into a deployment.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from aws_cdk import RemovalPolicy

from fashion_pipeline.layout import MODEL_PARAMETER_PREFIX

CONTEXT_KEY = "fashion-pipeline:config"

# CloudWatch Logs accepts only these retention periods.
VALID_LOG_RETENTION_DAYS = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557,
    2922, 3288, 3653,
)  # fmt: skip

_BUCKET_NAME = re.compile(r"^(?!xn--)(?!.*\.\.)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_REMOVAL_POLICIES = ("retain", "destroy")


class ConfigError(ValueError):
    """The ``fashion-pipeline:config`` context is invalid; the message names the key."""


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """Validated deployment settings. Field names are the snake_case of the context keys."""

    dataset_bucket_name: str | None = None
    """Bucket users upload images/annotations to; None lets CloudFormation generate a name."""
    artifacts_bucket_name: str | None = None
    """Bucket for fragments, reports and training runs; None = generated name."""
    label_mapping: Mapping[str, str | None] | None = None
    """Category -> label mapping for training (null excludes a category); None = the default
    (sling -> vest, sling_dress -> vest_dress)."""
    test_fraction: float = 0.2
    """Share of images held out for evaluation (0 < x < 1)."""
    min_f1: float = 0.0
    """A trained model is deployed only if its F1 on the test set reaches this."""
    inference_units: int = 1
    """Inference units a deployed model runs with (each bills by the hour)."""
    deploy_after_training: bool = True
    """Start the model when training passes the F1 gate."""
    training_poll_seconds: int = 600
    """How often the workflow checks a training job (training takes hours)."""
    training_timeout_hours: int = 72
    """A run that has not finished training after this long fails."""
    keep_previous_model_running: bool = False
    """Keep a dataset's running model when a newer one is deployed (each bills by the hour)."""
    assembler_memory_mb: int = 1024
    """Memory of the manifest assembly Lambdas (250,000 records fit in 1 GB)."""
    assembly_batch_size: int = 1000
    """Fragments each assembly child reads (the Distributed Map's batch, 1-10000)."""
    assembly_max_concurrency: int = 40
    """Assembly children running at once (1-1000; each is a Lambda invocation)."""
    model_parameter_prefix: str = MODEL_PARAMETER_PREFIX
    """SSM path under which each dataset's live model is one parameter, <prefix>/<dataset>
    (written by the workflow and by ``fashion-pipeline deploy``, read by the inference API)."""
    default_dataset: str | None = None
    """The dataset the API answers for when a request names none; None: the one dataset with a
    live model (a request must name one when several have)."""
    api_auth: str = "iam"
    """'iam' (SigV4-signed calls) or 'apiKey' (x-api-key header, with a usage plan)."""
    cors_origin: str | None = None
    """The one browser origin allowed to call the API (None: no CORS)."""
    api_throttle_rate: int = 10
    """Steady requests per second the API stage accepts."""
    api_throttle_burst: int = 20
    idle_stop_minutes: int = 30
    """A running model that served no request for this long is stopped (0 disables)."""
    auto_start_on_demand: bool = False
    """A detection request to a stopped model starts it (and gets 503 + Retry-After)."""
    converter_batch_size: int = 100
    """SQS messages per converter invocation (1-10000)."""
    converter_batch_window_seconds: int = 20
    """How long SQS gathers a batch (0-300 s); required > 0 when the batch size exceeds 10."""
    converter_memory_mb: int = 1024
    converter_timeout_seconds: int = 300
    converter_reserved_concurrency: int | None = None
    """Caps parallel converters (None = unreserved account concurrency)."""
    probe_concurrency: int = 32
    """Threads the converter uses to probe image objects."""
    removal_policy: str = "retain"
    """'retain' keeps buckets on stack deletion; 'destroy' deletes them and their objects."""
    derived_object_expiration_days: int = 365
    """Training runs' manifests, reports and outputs (runs/) expire after this many days."""
    noncurrent_version_expiration_days: int = 30
    access_log_expiration_days: int = 365
    log_retention_days: int = 30
    alarm_email: str | None = None
    """If set, alarms and training-run outcomes are mailed to this address (encrypted SNS topic)."""

    @property
    def destroy_on_removal(self) -> bool:
        return self.removal_policy == "destroy"

    @property
    def stateful_removal(self) -> RemovalPolicy:
        """What deleting the stack does to buckets, tables, keys and log groups."""
        return RemovalPolicy.DESTROY if self.destroy_on_removal else RemovalPolicy.RETAIN

    @property
    def training_defaults_json(self) -> str:
        """Defaults of every training run (TRAINING_DEFAULTS); a request may override them."""
        defaults: dict[str, Any] = {
            "test_fraction": self.test_fraction,
            "min_f1": self.min_f1,
            "inference_units": self.inference_units,
            "deploy": self.deploy_after_training,
            "poll_seconds": self.training_poll_seconds,
            "training_timeout_hours": self.training_timeout_hours,
            "keep_previous_model_running": self.keep_previous_model_running,
        }
        if self.label_mapping is not None:
            defaults["label_mapping"] = dict(self.label_mapping)
        return json.dumps(defaults, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_context(cls, raw: Any, *, base: Mapping[str, Any] | None = None) -> PipelineConfig:
        """Parse the context value: a mapping, a JSON string (as ``-c`` passes it), or None.

        Keys missing from ``raw`` are taken from ``base``, then from the field defaults.
        """
        if raw is None:
            raw = {}
        if isinstance(raw, str):
            try:
                raw = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{CONTEXT_KEY}: not valid JSON ({exc})") from None
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{CONTEXT_KEY}: must be a JSON object, got {type(raw).__name__}")
        # Keys beginning with '//' are comments, which JSON itself lacks.
        values = {
            k: v for k, v in {**(base or {}), **raw}.items() if not (isinstance(k, str) and k.startswith("//"))
        }
        unknown = sorted(set(values) - set(_PARSERS))
        replaced = [key for key in unknown if key in _REPLACED]
        if replaced:
            raise ConfigError(f"{CONTEXT_KEY}.{replaced[0]}: no longer a key: {_REPLACED[replaced[0]]}")
        if unknown:
            raise ConfigError(
                f"{CONTEXT_KEY}.{unknown[0]}: unknown key (valid keys: {', '.join(sorted(_PARSERS))})"
            )
        kwargs = {}
        for key, value in values.items():
            attribute, parse = _PARSERS[key]
            try:
                kwargs[attribute] = parse(value)
            except _Invalid as exc:
                raise ConfigError(f"{CONTEXT_KEY}.{key}: {exc}, got {value!r}") from None
        config = cls(**kwargs)
        config._check_combinations()
        return config

    @classmethod
    def from_node(cls, node: Any, *, base: Mapping[str, Any] | None = None) -> PipelineConfig:
        """Read and validate the config from a construct node's context."""
        return cls.from_context(node.try_get_context(CONTEXT_KEY), base=base)

    def _check_combinations(self) -> None:
        # The defaults of every run must make a valid run (the execution history budget bounds
        # how often a long training may be polled).
        from fashion_pipeline.training import OptionsError, TrainingOptions

        try:
            TrainingOptions.parse(json.loads(self.training_defaults_json))
        except OptionsError as exc:
            key = _KEY_OF_OPTION.get(exc.option or "", "trainingPollSeconds")
            raise ConfigError(f"{CONTEXT_KEY}.{key}: {exc}") from None
        # Lambda rejects an SQS event source that batches more than 10 records without a window.
        if self.converter_batch_size > 10 and self.converter_batch_window_seconds == 0:
            raise ConfigError(
                f"{CONTEXT_KEY}.converterBatchWindowSeconds: must be > 0 when "
                f"converterBatchSize ({self.converter_batch_size}) is greater than 10"
            )


class _Invalid(Exception):
    pass


def _integer(low: int, high: int):
    def parse(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise _Invalid(f"must be an integer between {low} and {high}")
        return value

    return parse


def _optional(parse):
    def parse_optional(value: Any):
        return None if value is None else parse(value)

    return parse_optional


def _fraction(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise _Invalid("must be a number strictly between 0 and 1")
    return float(value)


def _bucket_name(value: Any) -> str:
    if not isinstance(value, str) or not _BUCKET_NAME.match(value):
        raise _Invalid("must be a valid S3 bucket name (3-63 lowercase letters, digits, '.', '-')")
    return value


def _label_mapping(value: Any) -> Mapping[str, str | None]:
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and k and (v is None or (isinstance(v, str) and v)) for k, v in value.items()
    ):
        raise _Invalid("must be an object mapping category names to labels (or null to exclude)")
    return MappingProxyType(dict(value))


def _ratio(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise _Invalid("must be a number from 0 to 1")
    return float(value)


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Invalid("must be true or false")
    return value


def _choice(*choices: str):
    def parse(value: Any) -> str:
        if value not in choices:
            raise _Invalid(f"must be one of {', '.join(choices)}")
        return value

    return parse


def _origin(value: Any) -> str:
    if not isinstance(value, str) or not re.match(r"^https?://[A-Za-z0-9.-]+(:\d+)?$", value):
        raise _Invalid("must be an origin such as https://app.example.com (scheme, host, optional port)")
    return value


def _parameter_path(value: Any) -> str:
    # SSM: names hold a-zA-Z0-9_.- and "/", at most 15 levels, 1,011 characters with the
    # prefix ("Creating Systems Manager parameters", Parameter Store docs); the dataset (at most
    # 64 characters, fashion_pipeline.training.DATASET_NAME) is one more level.
    if not isinstance(value, str) or not re.match(r"^(/[A-Za-z0-9_.\-]+){1,13}$", value) or len(value) > 900 or value.lower().startswith(("/aws", "/ssm")):
        raise _Invalid("must be an SSM parameter path such as /fashion-pipeline/models (no trailing slash, not under /aws or /ssm)")
    return value


def _dataset_name(value: Any) -> str:
    from fashion_pipeline.training import DATASET_NAME

    if not isinstance(value, str) or not DATASET_NAME.match(value):
        raise _Invalid("must be a dataset name (1-64 letters, digits, '_', '.', '-')")
    return value


def _removal_policy(value: Any) -> str:
    if value not in _REMOVAL_POLICIES:
        raise _Invalid(f"must be one of {', '.join(_REMOVAL_POLICIES)}")
    return value


def _log_retention(value: Any) -> int:
    if isinstance(value, bool) or value not in VALID_LOG_RETENTION_DAYS:
        raise _Invalid(f"must be one of {', '.join(map(str, VALID_LOG_RETENTION_DAYS))}")
    return value


def _email(value: Any) -> str:
    if not isinstance(value, str) or not _EMAIL.match(value):
        raise _Invalid("must be an e-mail address")
    return value


# The configuration key that sets each training option's default (training_defaults_json).
_KEY_OF_OPTION = {
    "test_fraction": "testFraction", "label_mapping": "labelMapping", "min_f1": "minF1", "inference_units": "inferenceUnits",
    "deploy": "deployAfterTraining", "poll_seconds": "trainingPollSeconds", "training_timeout_hours": "trainingTimeoutHours",
    "keep_previous_model_running": "keepPreviousModelRunning",
}

# Keys of earlier versions, and what took their place (README, "One live model per dataset").
_REPLACED = {
    "modelParameterName": "each dataset's model now has its own pointer, <modelParameterPrefix>/<dataset> (see the README's "
                          "'Upgrading from the single pointer')",
}

# context key -> (dataclass field, parser); the parser raises _Invalid with the expectation.
_PARSERS = {
    "datasetBucketName": ("dataset_bucket_name", _optional(_bucket_name)),
    "artifactsBucketName": ("artifacts_bucket_name", _optional(_bucket_name)),
    "labelMapping": ("label_mapping", _optional(_label_mapping)),
    "testFraction": ("test_fraction", _fraction),
    "converterBatchSize": ("converter_batch_size", _integer(1, 10_000)),
    "converterBatchWindowSeconds": ("converter_batch_window_seconds", _integer(0, 300)),
    "converterMemoryMb": ("converter_memory_mb", _integer(128, 10_240)),
    # 900 s is Lambda's maximum; the queue's visibility timeout is derived from it.
    "converterTimeoutSeconds": ("converter_timeout_seconds", _integer(1, 900)),
    "converterReservedConcurrency": ("converter_reserved_concurrency", _optional(_integer(1, 10_000))),
    "probeConcurrency": ("probe_concurrency", _integer(1, 256)),
    "removalPolicy": ("removal_policy", _removal_policy),
    "derivedObjectExpirationDays": ("derived_object_expiration_days", _integer(1, 3650)),
    "noncurrentVersionExpirationDays": ("noncurrent_version_expiration_days", _integer(1, 3650)),
    "accessLogExpirationDays": ("access_log_expiration_days", _integer(1, 3650)),
    "logRetentionDays": ("log_retention_days", _log_retention),
    "alarmEmail": ("alarm_email", _optional(_email)),
    "minF1": ("min_f1", _ratio),
    "inferenceUnits": ("inference_units", _integer(1, 100)),
    "deployAfterTraining": ("deploy_after_training", _boolean),
    "trainingPollSeconds": ("training_poll_seconds", _integer(60, 3600)),
    "trainingTimeoutHours": ("training_timeout_hours", _integer(1, 240)),
    "keepPreviousModelRunning": ("keep_previous_model_running", _boolean),
    "assemblerMemoryMb": ("assembler_memory_mb", _integer(512, 10_240)),
    "assemblyBatchSize": ("assembly_batch_size", _integer(1, 10_000)),
    # Lambda's default account concurrency is 1,000, shared with the converter and the API.
    "assemblyMaxConcurrency": ("assembly_max_concurrency", _integer(1, 1_000)),
    "modelParameterPrefix": ("model_parameter_prefix", _parameter_path),
    "defaultDataset": ("default_dataset", _optional(_dataset_name)),
    "apiAuth": ("api_auth", _choice("iam", "apiKey")),
    "corsOrigin": ("cors_origin", _optional(_origin)),
    "apiThrottleRate": ("api_throttle_rate", _integer(1, 10_000)),
    "apiThrottleBurst": ("api_throttle_burst", _integer(1, 5_000)),
    "idleStopMinutes": ("idle_stop_minutes", _integer(0, 1440)),
    "autoStartOnDemand": ("auto_start_on_demand", _boolean),
}
