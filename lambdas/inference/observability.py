"""Powertools Logger, Tracer and Metrics of the API function, shared by its modules."""

from __future__ import annotations

import warnings

from aws_lambda_powertools import Logger, Metrics, Tracer

logger = Logger()
# Only botocore is traced: its calls are all this function makes, and the default (patch
# everything supported that is installed) imports libraries it never uses at cold start.
tracer = Tracer(patch_modules=["botocore"])
metrics = Metrics()
# GET /model and the OpenAPI document count nothing: no warning for an empty metrics flush.
warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)
