"""An abstract interpreter of a Step Functions (JSONPath) definition, for the contract tests.

It walks the states from StartAt, keeping for each state what is known of its input document:
which members were written and by whom (a Lambda of ours, a literal, an SDK call whose result
botocore's output shape describes, or several of these on different paths), and which paths a
Choice proved present with IsPresent. A read of a member that may be absent (a botocore member
not in its shape's ``required`` list, any list element, a member only some paths write) must be
covered by such a proof, or the state can fail with States.Runtime, which no Catch catches.

It also counts the history events a state writes, for the execution-history budget (25,000).
Counts per state type follow executions AWS recorded (Task: entered, scheduled, started,
succeeded, exited = 5, and 3 more per retry; Wait, Choice, Pass and Succeed: 2; Fail: 1; an
inline Map: 4, plus 2 per item and the events of its item's states; a Distributed Map: 6,
entered, started, map run started and succeeded, succeeded, exited, as its items run in child
executions, each with a history of its own: "Using Map state in Distributed mode",
https://docs.aws.amazon.com/step-functions/latest/dg/state-map-distributed.html).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from fashion_pipeline_tools.local.service_model import ModelError, output_member
from fashion_pipeline_tools.local.template import Template as Resolver

Path = tuple[Any, ...]
SDK = re.compile(r"^arn:aws:states:::aws-sdk:(?P<service>[a-z0-9]+):(?P<action>\w+)$")
# A JSONPath of the state's input inside a value ("$$." is the context object: always there).
_PATH = re.compile(r"(?<![\$\w])\$((?:\.[A-Za-z_][\w\-]*|\[\d+\])*)")
_SEGMENT = re.compile(r"\.([A-Za-z_][\w\-]*)|\[(\d+)\]")
_SERVICE = {"sfn": "stepfunctions", "eventbridge": "events"}
TASK_EVENTS, RETRY_EVENTS, STATE_EVENTS, FAIL_EVENTS, MAP_EVENTS, MAP_ITEM_EVENTS = 5, 3, 2, 1, 4, 2
DISTRIBUTED_MAP_EVENTS = 6


def definition(synthesized: Any, construct: str = "Training") -> dict[str, Any]:
    """The definition of the state machine of ``construct`` (the training one by default, "Batch"
    for batch detection) as CloudFormation would resolve it."""
    [resource] = [r for lid, r in synthesized.resources("AWS::StepFunctions::StateMachine").items() if lid.startswith(construct)]
    return json.loads(Resolver(synthesized.template_dict).resolve(resource["Properties"]["DefinitionString"]))


def all_states(states: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every state by name, those of Map item processors included."""
    found = {}
    for name, state in states.items():
        found[name] = state
        processor = state.get("ItemProcessor") or state.get("Iterator")
        if processor:
            found.update(all_states(processor["States"]))
    return found


def parse_path(text: str) -> Path | None:
    """``$.a.b[0]`` -> ("a", "b", 0); None for anything that is not a plain path of the input."""
    match = _PATH.fullmatch(text)
    if not match:
        return None
    return _segments(match.group(1))


def paths_in(value: str) -> list[Path]:
    """Every input path a ``.$`` value reads (a plain path, or the arguments of an intrinsic)."""
    return [_segments(m.group(1)) for m in _PATH.finditer(value)]


def _segments(text: str) -> Path:
    return tuple(name if name else int(index) for name, index in _SEGMENT.findall(text))


def show(path: Path) -> str:
    return "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)


# -- what is known of a value ---------------------------------------------------------------------
class Node:
    def needs(self, rest: Path) -> list[Path] | str:
        """The prefixes of ``rest`` (relative to this node) that must be proved present, or why the read is wrong."""
        raise NotImplementedError


@dataclass(frozen=True)
class Trusted(Node):
    """A result of one of our functions, or an intrinsic's value: whatever it holds is there."""

    def needs(self, rest: Path) -> list[Path] | str:
        return []


@dataclass(frozen=True)
class Literal(Node):
    text: str  # the JSON of the value (hashable)

    @classmethod
    def of(cls, value: Any) -> "Literal":
        return cls(json.dumps(value, sort_keys=True))

    @property
    def value(self) -> Any:
        return json.loads(self.text)

    def needs(self, rest: Path) -> list[Path] | str:
        current = self.value
        for step in rest:
            if isinstance(current, dict) and isinstance(step, str) and step in current:
                current = current[step]
            elif isinstance(current, list) and isinstance(step, int) and step < len(current):
                current = current[step]
            else:
                return [rest]
        return []


@dataclass(frozen=True)
class Obj(Node):
    fields: tuple[tuple[str, Node], ...]

    def get(self, name: str) -> Node | None:
        return dict(self.fields).get(name)

    def needs(self, rest: Path) -> list[Path] | str:
        if not rest:
            return []
        child = self.get(rest[0]) if isinstance(rest[0], str) else None
        if child is None:
            return [rest]  # written on no path, or only on some: only a proof makes it safe
        inner = child.needs(rest[1:])
        return inner if isinstance(inner, str) else [(rest[0], *p) for p in inner]


@dataclass(frozen=True)
class Sdk(Node):
    """(A part of) the result of an SDK call, as botocore's output shape describes it."""

    service: str
    operation: str
    base: Path = ()

    def needs(self, rest: Path) -> list[Path] | str:
        try:
            info = output_member(self.service, self.operation, self.base + rest)
        except ModelError as exc:
            return f"{self.service}.{self.operation} has no {show(self.base + rest)}: {exc}"
        return [prefix[len(self.base):] for prefix in info.optional_prefixes if len(prefix) > len(self.base)]

    def enum(self, rest: Path) -> tuple[str, ...]:
        return output_member(self.service, self.operation, self.base + rest).enum


@dataclass(frozen=True)
class Either(Node):
    """Different paths wrote different things: a read must be safe for each."""

    options: frozenset[Node]

    def needs(self, rest: Path) -> list[Path] | str:
        found: list[Path] = []
        for option in self.options:
            inner = option.needs(rest)
            if isinstance(inner, str):
                return inner
            found += inner
        return found


def merge(a: Node, b: Node) -> Node:
    if a == b:
        return a
    if isinstance(a, Obj) and isinstance(b, Obj):
        left, right = dict(a.fields), dict(b.fields)
        return Obj(tuple(sorted((k, merge(left[k], right[k])) for k in left.keys() & right.keys())))
    options = set(a.options if isinstance(a, Either) else {a}) | set(b.options if isinstance(b, Either) else {b})
    return Either(frozenset(options))


def node_at(root: Node, path: Path) -> Node:
    """What is known of the value at ``path`` (for copies and Map items)."""
    node = root
    for depth, step in enumerate(path):
        if isinstance(node, Obj):
            child = node.get(step) if isinstance(step, str) else None
            if child is None:
                return Literal.of(None)  # nothing known: any read beneath needs a proof
            node = child
        elif isinstance(node, Sdk):
            return Sdk(node.service, node.operation, node.base + path[depth:])
        elif isinstance(node, Literal):
            value = node.value
            for inner in path[depth:]:
                try:
                    value = value[inner]
                except (KeyError, IndexError, TypeError):
                    return Literal.of(None)
            return Literal.of(value)
        elif isinstance(node, Either):
            return Either(frozenset(node_at(option, path[depth:]) for option in node.options))
        else:
            return node
    return node


def put(root: Node, path: Path, value: Node) -> Node:
    if not path:
        return value
    fields = dict(root.fields) if isinstance(root, Obj) else {}
    fields[path[0]] = put(fields.get(path[0], Obj(())), path[1:], value)
    return Obj(tuple(sorted(fields.items())))


@dataclass(frozen=True)
class Knowledge:
    doc: Node
    facts: frozenset[Path]  # paths (and so their prefixes) a Choice proved present

    def proved(self, *paths: Path) -> "Knowledge":
        found = set(self.facts)
        for path in paths:
            found |= {path[:n] for n in range(1, len(path) + 1)}
        return Knowledge(self.doc, frozenset(found))

    def write(self, path: Path, value: Node) -> "Knowledge":
        facts = frozenset(f for f in self.facts if f[: len(path)] != path)
        return Knowledge(put(self.doc, path, value), facts)

    def merged(self, other: "Knowledge") -> "Knowledge":
        return Knowledge(merge(self.doc, other.doc), self.facts & other.facts)


# -- the interpreter -------------------------------------------------------------------------------
@dataclass
class Analysis:
    states: dict[str, dict[str, Any]]
    start: str
    initial: Knowledge
    entry: dict[str, Knowledge] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    inner: list["Analysis"] = field(default_factory=list)

    def run(self) -> "Analysis":
        pending = [(self.start, self.initial)]
        while pending:
            name, knowledge = pending.pop()
            before = self.entry.get(name)
            now = knowledge if before is None else before.merged(knowledge)
            if now == before:
                continue
            self.entry[name] = now
            pending += list(self._successors(name, self.states[name], now))
        # Reads are judged once, on what holds on every path into the state.
        self.problems = [p for name, state in self.states.items() if name in self.entry for p in self._check(name, state, self.entry[name])]
        for name, state in self.states.items():
            if state["Type"] == "Map" and name in self.entry:
                items = parse_path(state.get("ItemsPath", "$")) or ()
                processor = state.get("ItemProcessor") or state.get("Iterator")
                # Each iteration's input is one element, which exists: only reads inside it need proofs.
                element = node_at(self.entry[name].doc, items + (0,))
                inner = Analysis(processor["States"], processor["StartAt"], Knowledge(element, frozenset({()}))).run()
                self.inner.append(inner)
                self.problems += [f"{name} (an item): {problem}" for problem in inner.problems]
        return self

    def _read(self, name: str, knowledge: Knowledge, path: Path, what: str) -> list[str]:
        needs = knowledge.doc.needs(path)
        if isinstance(needs, str):
            return [f"{name}: {what} reads {show(path)}, which does not exist: {needs}"]
        missing = [p for p in needs if p not in knowledge.facts]
        return [f"{name}: {what} reads {show(path)}, but {show(p)} may be absent and no IsPresent guards it" for p in missing]

    def _check(self, name: str, state: dict[str, Any], knowledge: Knowledge) -> Iterator[str]:
        for key in ("InputPath", "ItemsPath", "SecondsPath", "TimestampPath", "CausePath", "ErrorPath"):
            if isinstance(state.get(key), str) and state[key] != "$":
                path = parse_path(state[key])
                if path is not None:
                    yield from self._read(name, knowledge, path, key)
        for key in ("Parameters", "ItemSelector"):
            for value in _dollar_values(state.get(key)):
                for path in paths_in(value):
                    yield from self._read(name, knowledge, path, key)
        if "ResultSelector" in state:
            raw = Knowledge(self._result(state), frozenset())
            for value in _dollar_values(state["ResultSelector"]):
                for path in paths_in(value):
                    yield from self._read(name, raw, path, "ResultSelector (no guard can run before it)")
        if state["Type"] == "Choice":
            for rule in state.get("Choices", []):
                yield from self._rule_reads(name, rule, knowledge)
        if state["Type"] == "Succeed" and isinstance(state.get("OutputPath"), str):
            path = parse_path(state["OutputPath"])
            if path:
                yield from self._read(name, knowledge, path, "OutputPath")

    def _rule_reads(self, name: str, rule: dict[str, Any], knowledge: Knowledge) -> Iterator[str]:
        if "And" in rule:
            for part in rule["And"]:  # And stops at the first false part: earlier proofs guard later reads
                yield from self._rule_reads(name, part, knowledge)
                knowledge = knowledge.proved(*_proves(part))
            return
        for key in ("Or",):
            for part in rule.get(key, []):
                yield from self._rule_reads(name, part, knowledge)
        if "Not" in rule:
            yield from self._rule_reads(name, rule["Not"], knowledge)
        if "Variable" in rule and "IsPresent" not in rule:
            path = parse_path(rule["Variable"])
            if path is not None:
                yield from self._read(name, knowledge, path, "a Choice rule")
            for key, value in rule.items():
                if key.endswith("Path") and isinstance(value, str) and parse_path(value) is not None:
                    yield from self._read(name, knowledge, parse_path(value), "a Choice rule")

    def _result(self, state: dict[str, Any]) -> Node:
        resource = state.get("Resource", "")
        match = SDK.match(resource)
        if match:
            service = _SERVICE.get(match["service"], match["service"])
            action = match["action"]
            return Sdk(service, action[0].upper() + action[1:])
        return Trusted()  # a Lambda of ours (payload only), SNS/EventBridge answers nobody reads

    def _output(self, state: dict[str, Any], knowledge: Knowledge, result: Node) -> Knowledge:
        result_path = state.get("ResultPath", "$")
        if result_path is None:
            return knowledge
        path = parse_path(result_path)
        return Knowledge(result, frozenset()) if path == () else knowledge.write(path, result)

    def _pass_value(self, state: dict[str, Any], knowledge: Knowledge) -> Node | None:
        if "Parameters" in state:
            return self._shape(state["Parameters"], knowledge)
        if "Result" in state:
            return Literal.of(state["Result"])
        return None

    def _shape(self, template: Any, knowledge: Knowledge) -> Node:
        if not isinstance(template, dict):
            return Literal.of(template)
        fields = {}
        for key, value in template.items():
            if key.endswith(".$"):
                path = parse_path(value) if isinstance(value, str) else None
                fields[key[:-2]] = node_at(knowledge.doc, path) if path is not None else Trusted()
            else:
                fields[key] = self._shape(value, knowledge)
        return Obj(tuple(sorted(fields.items())))

    def _successors(self, name: str, state: dict[str, Any], knowledge: Knowledge) -> Iterator[tuple[str, Knowledge]]:
        kind = state["Type"]
        if kind == "Choice":
            for rule in state.get("Choices", []):
                yield rule["Next"], knowledge.proved(*_proves(rule))
            if "Default" in state:
                yield state["Default"], knowledge
            return
        if kind == "Pass":
            value = self._pass_value(state, knowledge)
            after = knowledge if value is None and "ResultPath" not in state else self._output(state, knowledge, value or Trusted())
        elif kind == "Task":
            after = self._output(state, knowledge, self._result(state))
        elif kind == "Map":
            after = self._output(state, knowledge, Trusted())
        else:
            after = knowledge
        for catcher in state.get("Catch", []):
            if catcher.get("ResultPath", "$") is None:  # the error is discarded: the input goes on
                yield catcher["Next"], knowledge
                continue
            path = parse_path(catcher.get("ResultPath", "$"))
            error = Obj((("Cause", Trusted()), ("Error", Trusted())))
            yield catcher["Next"], Knowledge(error, frozenset()) if path == () else knowledge.write(path, error)
        if "Next" in state:
            yield state["Next"], after


def _dollar_values(template: Any) -> Iterator[str]:
    if isinstance(template, dict):
        for key, value in template.items():
            if key.endswith(".$") and isinstance(value, str):
                yield value
            else:
                yield from _dollar_values(value)
    elif isinstance(template, list):
        for value in template:
            yield from _dollar_values(value)


def _proves(rule: dict[str, Any]) -> list[Path]:
    """Paths a rule's being true proves present: IsPresent true, any comparison, And of them."""
    if "And" in rule:
        return [p for part in rule["And"] for p in _proves(part)]
    if "Variable" not in rule or rule.get("IsPresent") is False or "Not" in rule:
        return []
    path = parse_path(rule["Variable"])
    return [path] if path else []


# -- graph and history events -------------------------------------------------------------------------
def edges(state: dict[str, Any]) -> list[str]:
    found = [rule["Next"] for rule in state.get("Choices", [])] + [c["Next"] for c in state.get("Catch", [])]
    found += [state[key] for key in ("Next", "Default") if key in state]
    return found


def state_events(state: dict[str, Any], items: int = 2) -> int:
    kind = state["Type"]
    if kind == "Task":
        return TASK_EVENTS + RETRY_EVENTS * sum(r.get("MaxAttempts", 3) for r in state.get("Retry", []))
    if kind == "Fail":
        return FAIL_EVENTS
    if kind == "Map" and (state.get("ItemProcessor") or {}).get("ProcessorConfig", {}).get("Mode") == "DISTRIBUTED":
        return DISTRIBUTED_MAP_EVENTS
    if kind == "Map":
        processor = state.get("ItemProcessor") or state.get("Iterator")
        inner = longest_path(processor["States"], processor["StartAt"])
        return MAP_EVENTS + items * (MAP_ITEM_EVENTS + inner)
    return STATE_EVENTS


def cycles(states: dict[str, dict[str, Any]]) -> list[set[str]]:
    """The strongly connected components with more than one state (the polling loops)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(name: str) -> None:
        index[name] = low[name] = len(index)
        stack.append(name)
        on_stack.add(name)
        for successor in edges(states[name]):
            if successor not in index:
                visit(successor)
                low[name] = min(low[name], low[successor])
            elif successor in on_stack:
                low[name] = min(low[name], index[successor])
        if low[name] == index[name]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == name:
                    break
            if len(component) > 1:
                found.append(component)

    for name in states:
        if name not in index:
            visit(name)
    return found


def iteration_events(states: dict[str, dict[str, Any]], loop: set[str], wait: str) -> int:
    """The most events one trip round a loop writes: the longest path from its Wait back to it."""
    best = 0

    def walk(name: str, seen: frozenset[str], total: int) -> None:
        nonlocal best
        total += state_events(states[name])
        for successor in edges(states[name]):
            if successor == wait:
                best = max(best, total)
            elif successor in loop and successor not in seen:
                walk(successor, seen | {successor}, total)

    walk(wait, frozenset({wait}), 0)
    return best


def longest_path(states: dict[str, dict[str, Any]], start: str) -> int:
    """The most events any run writes with every loop taken once (back edges into a loop's
    Wait left out): the part of the budget that does not grow with the number of polls."""
    loops = cycles(states)
    waits = {name for loop in loops for name in loop if states[name]["Type"] == "Wait"}
    memo: dict[str, int] = {}

    def walk(name: str, path: frozenset[str]) -> int:
        if name in memo:
            return memo[name]
        successors = [s for s in edges(states[name]) if s not in path and not (s in waits and _inside_same_loop(loops, name, s))]
        value = state_events(states[name]) + max((walk(s, path | {s}) for s in successors), default=0)
        memo[name] = value
        return value

    return walk(start, frozenset({start}))


def _inside_same_loop(loops: list[set[str]], a: str, b: str) -> bool:
    return any(a in loop and b in loop for loop in loops)
