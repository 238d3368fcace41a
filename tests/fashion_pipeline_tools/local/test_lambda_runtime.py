"""LocalLambdaRuntime's execution environments (local mode): each invocation in a worker
process of its function, with the function's environment, concurrently with the others,
its output handed to the runtime's sink and never printed by this process."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from fashion_pipeline_tools.local.lambda_runtime import LocalFunction, LocalLambdaRuntime

HANDLERS = '''
import json, os, sys, time

def handler(event, context):
    if event.get("sleep"):
        time.sleep(event["sleep"])
    if event.get("fail"):
        raise LookupError(event["fail"])
    print(json.dumps({"service": os.environ.get("POWERTOOLS_SERVICE_NAME"), "request": context.aws_request_id}))
    print("to stderr", file=sys.stderr)
    return {"service": os.environ.get("POWERTOOLS_SERVICE_NAME"), "colour": os.environ.get("COLOUR"),
            "function": context.function_name, "pid": os.getpid(),
            "remaining_ms": context.get_remaining_time_in_millis()}
'''


@pytest.fixture
def runtime(tmp_path: Path, monkeypatch):
    (tmp_path / "local_runtime_probe.py").write_text(HANDLERS)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))  # the environments inherit it
    monkeypatch.setenv("COLOUR", "the parent's")  # must not leak where a function sets its own
    lines: list[tuple[str, str]] = []
    runtime = LocalLambdaRuntime()
    for name, colour in (("red-function", "red"), ("blue-function", "blue")):
        runtime.add(LocalFunction(name, "local_runtime_probe.handler", {"POWERTOOLS_SERVICE_NAME": name.split("-")[0], "COLOUR": colour},
                                  timeout_seconds=3))
    # No AWS call is made: the endpoint is only what the environments would talk to.
    runtime.isolate("http://127.0.0.1:9", lambda function, line: lines.append((function.name, line)))
    runtime.lines = lines
    yield runtime
    runtime.close()


def invoke(runtime, name, **event):
    headers: dict[str, str] = {}
    return json.loads(runtime.invoke(name, json.dumps(event), headers)), headers


def test_each_function_runs_with_its_own_environment_and_its_output_goes_to_the_sink(runtime, capfd):
    red, headers = invoke(runtime, "red-function")
    blue, _ = invoke(runtime, "blue-function")
    assert headers == {}
    assert (red["service"], red["colour"], red["function"]) == ("red", "red", "red-function")
    assert (blue["service"], blue["colour"], blue["function"]) == ("blue", "blue", "blue-function")
    assert red["pid"] != blue["pid"]
    assert 0 < red["remaining_ms"] <= 3000
    printed = [(name, json.loads(line)["service"]) for name, line in runtime.lines if line.startswith("{")]
    assert printed == [("red-function", "red"), ("blue-function", "blue")]
    assert ("red-function", "to stderr") in runtime.lines
    out, err = capfd.readouterr()
    assert out == "" and "to stderr" not in err  # this process printed nothing of theirs


def test_a_warm_environment_is_reused(runtime):
    first, _ = invoke(runtime, "red-function")
    second, _ = invoke(runtime, "red-function")
    assert first["pid"] == second["pid"]


@pytest.mark.parametrize("other", ["red-function", "blue-function"])
def test_a_slow_invocation_does_not_hold_up_another(runtime, other):
    """The same function (a second environment) or another one answers while one is busy."""
    # Two environments warm, so that what is measured is waiting, not a cold start.
    runtime.keep_warm("red-function", spares=2)
    pool, deadline = runtime._pools["red-function"], time.monotonic() + 60
    while len(pool._idle) < 2:
        assert time.monotonic() < deadline, "the environments did not start"
        time.sleep(0.05)
    invoke(runtime, other)
    slow: dict = {}
    busy = threading.Thread(target=lambda: slow.update(invoke(runtime, "red-function", sleep=2.5)[0]))
    busy.start()
    time.sleep(0.3)
    started = time.monotonic()
    quick, _ = invoke(runtime, other)
    assert time.monotonic() - started < 1.5, "the quick invocation waited for the slow one"
    assert busy.is_alive()
    busy.join()
    assert slow["service"] == "red" and quick["service"] == other.split("-")[0]


def test_an_exception_is_answered_as_lambda_answers_it(runtime):
    answer, headers = invoke(runtime, "red-function", fail="no such thing")
    assert headers == {"x-amz-function-error": "Unhandled"}
    assert answer["errorType"] == "LookupError" and answer["errorMessage"] == "no such thing"
    assert invoke(runtime, "red-function")[0]["service"] == "red"  # the environment lives on


def test_an_invocation_past_the_functions_timeout_ends_its_environment(runtime):
    answer, headers = invoke(runtime, "blue-function", sleep=10)
    assert headers == {"x-amz-function-error": "Unhandled"}
    assert answer["errorType"] == "Sandbox.Timedout" and "Task timed out after 3.00 seconds" in answer["errorMessage"]
    assert invoke(runtime, "blue-function")[0]["colour"] == "blue"  # a fresh environment


def test_a_handler_that_cannot_be_imported_is_an_import_error(runtime):
    runtime.add(LocalFunction("broken-function", "local_runtime_probe_missing.handler"))
    answer, headers = invoke(runtime, "broken-function")
    assert headers == {"x-amz-function-error": "Unhandled"}
    assert answer["errorType"] == "Runtime.ImportModuleError" and "local_runtime_probe_missing" in answer["errorMessage"]


def test_a_spare_kept_warm_answers_at_once_while_the_others_are_busy(runtime):
    runtime.keep_warm("blue-function")
    pool = runtime._pools["blue-function"]
    deadline = time.monotonic() + 30
    while not pool._idle:
        assert time.monotonic() < deadline, "no spare environment was started"
        time.sleep(0.05)
    busy = threading.Thread(target=invoke, args=(runtime, "blue-function"), kwargs={"sleep": 2})
    busy.start()  # takes the spare; another is started in the background
    while len(pool._idle) < 1 or pool._warming:
        assert time.monotonic() < deadline, "the spare was not replaced"
        time.sleep(0.05)
    started = time.monotonic()
    assert invoke(runtime, "blue-function")[0]["colour"] == "blue"
    assert time.monotonic() - started < 0.5  # warm: no cold start
    busy.join()
