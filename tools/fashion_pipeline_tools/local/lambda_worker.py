"""An execution environment of one local-mode function: ``python -m
fashion_pipeline_tools.local.lambda_worker SPEC`` (see ``lambda_runtime._Environment``).

The process's environment is the function's (its variables, its role's credentials, the
endpoint of moto's server). It imports the handler (the init phase), answers that it is
ready, then reads one invocation request per line on stdin, runs the handler and writes the
answer as one line ``TOKEN {json}`` on stdout, after whatever the handler printed. The token
comes from the parent, so that no line a handler prints can pass for an answer.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any


def _say(token: str, answer: dict[str, Any]) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    # A leading newline ends a line the handler left open; empty lines are not forwarded.
    os.write(1, f"\n{token} {json.dumps(answer)}\n".encode())


def main(argv: list[str]) -> int:
    spec = json.loads(argv[1])
    token = spec["token"]
    from .lambda_runtime import LambdaContext, LocalFunction, _validate_calls_made_by_handlers, unhandled

    _validate_calls_made_by_handlers(always=True)
    try:
        handler = LocalFunction(os.environ.get("AWS_LAMBDA_FUNCTION_NAME", ""), spec["handler"]).load()
    except Exception as exc:  # noqa: BLE001 - Lambda answers every invocation with the import error
        _say(token, {"error": {**unhandled(exc), "errorType": "Runtime.ImportModuleError",
                               "errorMessage": f"Unable to import module {spec['handler']!r}: {exc}"}})
        return 1
    _say(token, {"ready": True})
    for line in sys.stdin:
        request = json.loads(line)
        context = LambdaContext(**request["context"])
        context.deadline = time.monotonic() + context.timeout_seconds
        try:
            answer = {"result": json.dumps(handler(request["event"], context), default=str)}
        except Exception as exc:  # reported as Lambda reports an unhandled error
            answer = {"error": unhandled(exc)}
        _say(token, answer)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
