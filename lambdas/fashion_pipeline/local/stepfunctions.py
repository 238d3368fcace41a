"""Bring moto's Step Functions interpreter in line with AWS where this project depends on it.

AWS resolves a definite JSONPath such as ``$.Items[0].Status`` to the value itself; moto 5
returns it wrapped in a one-element list whenever the path goes through an array index.
This patch makes definite paths (no wildcard, slice, filter or recursive descent) resolve
to their single match, as on AWS; every other path keeps moto's behaviour.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

_INDEFINITE = re.compile(r"\*|\.\.|\?\(|\[[^\]]*:[^\]]*\]")
_installed = False


def install() -> None:
    global _installed
    if _installed:
        return
    from jsonpath_ng.ext import parse
    from moto.stepfunctions.parser.asl.utils import json_path

    original = json_path.extract_json

    def extract_json(path: str, data: Any) -> Any:
        if not _INDEFINITE.search(path):
            matches = parse(path).find(data)
            if len(matches) == 1:
                return matches[0].value
        return original(path, data)

    # Modules imported the function by name: replace every reference.
    for module in list(sys.modules.values()):
        if getattr(module, "__name__", "").startswith("moto.stepfunctions") and getattr(module, "extract_json", None) is original:
            module.extract_json = extract_json  # type: ignore[attr-defined]
    json_path.extract_json = extract_json  # type: ignore[assignment]
    # The interpreter logs an ERROR for every IsPresent test of an absent path, which is a
    # normal outcome of a Choice state, not a failure.
    logging.getLogger("moto.stepfunctions.parser.asl.component.eval_component").setLevel(logging.CRITICAL)
    _installed = True
