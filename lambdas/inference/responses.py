"""JSON answers, serialised once."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.event_handler import Response


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    # Serialised here: the validation middleware then has a string to pass through.
    return Response(status, "application/json", body=json.dumps(body, separators=(",", ":")), headers=headers)
