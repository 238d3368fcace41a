"""Inference API function: API Gateway (REST, Lambda proxy) -> ``inference.routes``.

The entry point ``inference.handler.handler`` (infrastructure/api.py) only wraps the resolver
in Powertools' Logger, Tracer and Metrics. The routes are ``inference.routes``, the domain
errors and their answers ``inference.errors``, the deployed model ``inference.model``.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from inference import routes
from inference.observability import logger, metrics, tracer


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler(capture_response=False)  # a rendered image has no place in a trace
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # routes.resolve is app.resolve: tests/infrastructure/calls.py follows a resolver's routes
    # only from a resolve call in the module that defines it.
    return routes.resolve(event, context)
