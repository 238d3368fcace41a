"""Static inventory of the AWS calls each deployed Lambda handler can make, checked against botocore and IAM.

The end-to-end tests run with IAM enforced but only on the paths they exercise; this module reads
the code instead, so every path counts. For one handler (``"workflow.handler.retire"``) it finds the
code that handler can run, the boto3/botocore calls in that code, the operation each call names and
the IAM action(s) the operation needs; :class:`Role` then says whether a synthesized role allows them.

Which code a handler can run (attribution)
------------------------------------------
Analysed modules are those of the function's own package (``lambdas/<package>/``) and of
``fashion_pipeline`` that are imported from it, i.e. what the code asset ships (``fashion_pipeline_tools.local``
is left out of every asset by infrastructure/bundling.py, so it is not analysed either). A *unit* is a
top-level function, a method, a class body or a module's top-level statements; a nested function or
lambda belongs to the unit it is written in. Starting from the handler function and its module's
top-level statements, a unit is reachable when a reachable unit

* names it: a call or a mere reference (``record_handler=record_handler`` passed to Powertools counts),
  by its bare name in its own module, through an import (``from workflow.assembly import assemble_dataset``)
  or module-qualified (``lock.acquire``); names are resolved per module, not per scope, so a local
  variable that shadows a module function over-approximates;
* imports its module: the module's top-level statements run at cold start (``runtime = Runtime()``), a
  package's ``__init__`` with each of its submodules;
* for a class body: names the class (its base classes follow). A method of a named class is reachable
  when it is a dunder method or when a reachable unit accesses an attribute of that name on anything
  (``x.open(...)``, ``self._write_activity``): receivers are not typed, so any same-named method of any
  named class in the analysed modules is taken;
* for a function registered on a Powertools event resolver (``app = APIGatewayRestResolver(...)``,
  ``@app.get(...)``): calls ``app.resolve`` (the resolver dispatches to every route it registered).

The five workflow handlers share ``workflow/handler.py`` but start from different functions, so each
gets only what it can reach (and is checked against its own role).

Which service a call is for
---------------------------
A call ``receiver.method(...)`` is an AWS call when the receiver is

* a client-creating call with a literal service: ``client("s3")``, ``boto3.client("s3", ...)``,
  ``session.create_client("s3", ...)``, ``runtime.client("rekognition")`` (any callee named ``client``
  or ``create_client``), or a call of an analysed function whose every ``return`` is one (``s3_client()``);
* a name assigned from such an expression in the same unit (``rekognition = client("rekognition")``,
  ``s3, bucket = runtime.client("s3"), ...``);
* a name (or an attribute, ``self.s3``) spelt like a service the handler's reachable code creates
  clients for, optionally with ``_client``: the ``s3`` or ``dynamodb`` parameters of helpers;
* otherwise, when ``method`` is an operation of exactly one of those services and no named class defines
  a method of that name (``self.client.get_object`` in ``S3ImageStore``).

``get_paginator("list_objects_v2").paginate(...)`` is that operation (validated with paginate's
arguments); ``get_waiter(name)`` the waiter's operation; S3's transfer helpers ``upload_file`` and
``upload_fileobj`` are PutObject (the multipart operations they may use need s3:PutObject too),
``download_file`` and ``download_fileobj`` are HeadObject plus GetObject. A client's operation that is
referenced without being called (``_pages(rekognition.describe_projects, ...)``) counts as a call where
it is referenced (its arguments are not validated). Attributes that are no operation (``exceptions``,
``meta``) are not calls; ``can_paginate`` and ``close`` are ignored; any other method called on a client
is reported as not being an operation. Not modelled: actions that depend on argument values (GetObject
with a VersionId also needs s3:GetObjectVersion), KMS permissions of encrypted resources, and the
state machine's own SDK integrations (not Lambda code; see the workflow contract test).

What is checked
---------------
* The operation exists in botocore's model. When every argument is a keyword (or ``**name`` of a dict
  literal built in the same unit), the request is validated with ``validate_request``, non-literal values
  as ``Unknown()`` placeholders: a misspelled or missing parameter, or a wrong literal, fails. Positional
  arguments to an operation are an error (boto3 accepts keywords only).
* Some ``Allow`` statement of the role (its ``AWS::IAM::Policy``, ``AWS::IAM::ManagedPolicy`` and
  ``AWS::IAM::RolePolicy`` resources and its own ``Policies``) matches the IAM action (case-insensitive,
  ``*``/``?`` wildcards, ``NotAction``), and no unconditional ``Deny`` on ``"*"`` matches it. AWS managed
  policies (ARNs, not in the template) are not read. Resources are the end-to-end tests' business (with
  IAM enforced) with one exception, simple and easy to get wrong: an S3 bucket-level action (ListBucket,
  ...Bucket...) needs a statement whose resources include a bucket ARN (``arn:aws:s3:::name``, no ``/``)
  or ``*``, an object-level one (...Object..., multipart) one that can match an object ARN
  (``arn:aws:s3:::name/...``). Conditions are not evaluated; which action needs resource-level
  permissions at all is not known offline (no Service Authorization Reference data here), so that is
  not checked.
"""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import botocore.session
from botocore import xform_name
from botocore.exceptions import DataNotFoundError, UnknownServiceError

from fashion_pipeline_tools.local.service_model import ModelError, Unknown, operation_model, validate_request
from fashion_pipeline_tools.local.template import Template

ROOT = Path(__file__).resolve().parents[2]
LAMBDAS = ROOT / "lambdas"
SHARED_PACKAGES = ("fashion_pipeline",)
NOT_DEPLOYED = ("fashion_pipeline_tools.local",)  # excluded from every code asset (infrastructure/bundling.py _IGNORED)

# -- IAM actions ----------------------------------------------------------------------------------
# Operations whose IAM action is not "<prefix>:<Operation>". Sources: the Service Authorization Reference,
# https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazons3.html ("ListBucket: grants
# permission to list some or all of the objects in an Amazon S3 bucket (up to 1000)"; GetObject covers
# HeadObject; PutObject covers the multipart upload operations) and .../list_awslambda.html (InvokeFunction),
# and the "Permissions" sections of the S3 API reference: API_ListObjectsV2.html and API_HeadBucket.html
# ("you must have permission to perform the s3:ListBucket action"), API_HeadObject.html ("To use HEAD,
# you must have the s3:GetObject permission").
IAM_ACTIONS: dict[tuple[str, str], tuple[str, ...]] = {
    ("s3", "ListObjectsV2"): ("s3:ListBucket",),
    ("s3", "ListObjects"): ("s3:ListBucket",),
    ("s3", "HeadObject"): ("s3:GetObject",),
    ("s3", "HeadBucket"): ("s3:ListBucket",),
    ("s3", "CreateMultipartUpload"): ("s3:PutObject",),
    ("s3", "UploadPart"): ("s3:PutObject",),
    ("s3", "CompleteMultipartUpload"): ("s3:PutObject",),
    ("lambda", "Invoke"): ("lambda:InvokeFunction",),
    # SQS's batch operations have no IAM action of their own: "setting permissions for SendMessage,
    # DeleteMessage, or ChangeMessageVisibility sets permissions for the corresponding batch versions"
    # (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-batch-api.html).
    ("sqs", "SendMessageBatch"): ("sqs:SendMessage",),
    ("sqs", "DeleteMessageBatch"): ("sqs:DeleteMessage",),
    ("sqs", "ChangeMessageVisibilityBatch"): ("sqs:ChangeMessageVisibility",),
}
# The IAM prefix is the model's signing name (endpoint prefix when it has none), except for these.
_IAM_PREFIXES = {"cloudwatch": "cloudwatch"}  # signs as "monitoring"

# S3 transfer helpers (boto3.s3.inject): (operations, positional parameters, the operation ExtraArgs go to).
_TRANSFERS = {
    "upload_file": (("PutObject",), ("Filename", "Bucket", "Key"), "PutObject"),
    "upload_fileobj": (("PutObject",), ("Fileobj", "Bucket", "Key"), "PutObject"),
    "download_file": (("HeadObject", "GetObject"), ("Bucket", "Key", "Filename"), "GetObject"),
    "download_fileobj": (("HeadObject", "GetObject"), ("Bucket", "Key", "Fileobj"), "GetObject"),
}
_TRANSFER_OPTIONAL = ("ExtraArgs", "Callback", "Config")
_IGNORED_METHODS = frozenset({"can_paginate", "close"})
_CLIENT_FACTORIES = frozenset({"client", "create_client"})


def iam_prefix(service: str) -> str:
    if service in _IAM_PREFIXES:
        return _IAM_PREFIXES[service]
    metadata = _session().get_service_model(service).metadata
    return metadata.get("signingName") or metadata["endpointPrefix"]


def iam_actions(service: str, operation: str) -> tuple[str, ...]:
    return IAM_ACTIONS.get((service, operation)) or (f"{iam_prefix(service)}:{operation}",)


@functools.cache
def _session() -> botocore.session.Session:
    return botocore.session.get_session()


@functools.cache
def _services() -> frozenset[str]:
    return frozenset(_session().get_available_services())


@functools.cache
def _snake_operations(service: str) -> dict[str, str]:
    return {xform_name(name): name for name in _session().get_service_model(service).operation_names}


def _methods_of(service: str) -> frozenset[str]:
    """What the last receiver rule (an operation of exactly one service) recognises: operations, S3's transfer helpers."""
    return frozenset(_snake_operations(service)) | (frozenset(_TRANSFERS) if service == "s3" else frozenset())


# -- inventory ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Call:
    """One operation one call site makes (a download_file site makes two)."""

    handler: str
    path: str  # relative to the repository
    line: int
    service: str
    method: str  # as written: "get_object", "get_paginator", "upload_file"
    operation: str | None  # the model's name ("GetObject"); None when the method is no operation
    problems: tuple[str, ...] = ()  # unknown operation, invalid request

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"

    @property
    def actions(self) -> tuple[str, ...]:
        return iam_actions(self.service, self.operation) if self.operation else ()


@dataclass(frozen=True)
class Unit:
    module: str
    qualname: str  # "" a module's top-level statements, "f" a function, "C" a class body, "C.m" a method


@dataclass
class _Module:
    name: str
    path: Path
    tree: ast.Module
    functions: dict[str, ast.FunctionDef | ast.AsyncFunctionDef]
    classes: dict[str, ast.ClassDef]
    aliases: dict[str, tuple[str, str | None]]  # local name -> (module, attribute) or (module, None)
    resolvers: dict[str, list[str]]  # resolver variable -> functions registered on it


@dataclass
class _Facts:
    units: set[Unit] = field(default_factory=set)
    classes: set[tuple[str, str]] = field(default_factory=set)
    modules: set[str] = field(default_factory=set)
    attributes: set[str] = field(default_factory=set)


_Def = (ast.FunctionDef, ast.AsyncFunctionDef)


class Program:
    """The analysed modules of one function package, parsed once."""

    def __init__(self, package: str, root: Path = LAMBDAS, shared: Iterable[str] = SHARED_PACKAGES) -> None:
        self.root = root
        self.packages = (package, *shared)
        self._modules: dict[str, _Module | None] = {}

    # -- modules ------------------------------------------------------------------------------
    def module(self, name: str) -> _Module | None:
        if name not in self._modules:
            self._modules[name] = self._load(name)
        return self._modules[name]

    def _load(self, name: str) -> _Module | None:
        if name.split(".")[0] not in self.packages or any(name == p or name.startswith(p + ".") for p in NOT_DEPLOYED):
            return None
        base = self.root.joinpath(*name.split("."))
        path = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
        if not path.is_file():
            return None
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        functions = {n.name: n for n in tree.body if isinstance(n, _Def)}
        classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
        aliases: dict[str, tuple[str, str | None]] = {}
        for node in ast.walk(tree):  # function-level imports too: names are resolved per module
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:
                        aliases[alias.asname] = (alias.name, None)
                    else:
                        head = alias.name.split(".")[0]
                        aliases[head] = (head, None)
            elif isinstance(node, ast.ImportFrom):
                source = _absolute(name, is_package, node.module, node.level)
                for alias in node.names:
                    if alias.name != "*":
                        aliases[alias.asname or alias.name] = (source, alias.name)
        resolvers: dict[str, list[str]] = {}
        for node in tree.body:
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) and _callee(node.value).endswith("Resolver"):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        resolvers[target.id] = [
                            f.name for f in functions.values() if any(_decorator_owner(d) == target.id for d in f.decorator_list)
                        ]
        return _Module(name, path, tree, functions, classes, aliases, resolvers)

    def display(self, path: Path) -> str:
        for base in (ROOT, self.root):
            try:
                return str(path.relative_to(base))
            except ValueError:
                continue
        return str(path)

    # -- name resolution ----------------------------------------------------------------------
    def resolve(self, module: str, name: str, depth: int = 0) -> tuple[str, Any] | None:
        """What ``name`` means at the top level of ``module``: ("function", Unit), ("class", (module, name)),
        ("module", name) or None (not analysed code)."""
        mod = self.module(module)
        if mod is None or depth > 8:
            return None
        if name in mod.functions:
            return "function", Unit(module, name)
        if name in mod.classes:
            return "class", (module, name)
        if name in mod.aliases:
            target, attribute = mod.aliases[name]
            if attribute is None:
                return ("module", target) if self.module(target) else None
            if self.module(f"{target}.{attribute}"):
                return "module", f"{target}.{attribute}"
            return self.resolve(target, attribute, depth + 1)
        return None

    def resolve_expression(self, module: str, node: ast.expr) -> tuple[str, Any] | None:
        if isinstance(node, ast.Name):
            return self.resolve(module, node.id)
        if isinstance(node, ast.Attribute):
            owner = self.resolve_expression(module, node.value)
            if owner is not None and owner[0] == "module":
                if self.module(f"{owner[1]}.{node.attr}"):
                    return "module", f"{owner[1]}.{node.attr}"
                return self.resolve(owner[1], node.attr)
        return None

    # -- units --------------------------------------------------------------------------------
    def roots(self, unit: Unit) -> list[ast.AST]:
        """The syntax of a unit (see the module docstring)."""
        mod = self.module(unit.module)
        assert mod is not None, unit
        if not unit.qualname:
            return [n for n in mod.tree.body if not isinstance(n, (*_Def, ast.ClassDef))]
        head, _, method = unit.qualname.partition(".")
        if head in mod.functions and not method:
            return [mod.functions[head]]
        cls = mod.classes[head]
        if method:
            return [n for n in cls.body if isinstance(n, _Def) and n.name == method]
        return [*cls.bases, *cls.keywords, *cls.decorator_list, *(n for n in cls.body if not isinstance(n, _Def))]

    def methods(self, module: str, cls: str) -> list[str]:
        mod = self.module(module)
        assert mod is not None
        return [n.name for n in mod.classes[cls].body if isinstance(n, _Def)]

    def walk(self, unit: Unit) -> Iterator[ast.AST]:
        for root in self.roots(unit):
            yield from ast.walk(root)

    @functools.cache
    def facts(self, unit: Unit) -> _Facts:
        mod = self.module(unit.module)
        assert mod is not None
        facts = _Facts()

        def add(target: tuple[str, Any] | None) -> None:
            if target is None:
                return
            kind, value = target
            if kind == "function":
                facts.units.add(value)
            elif kind == "class":
                facts.classes.add(value)
            else:
                facts.modules.add(value)

        for node in self.walk(unit):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
                add(self.resolve(unit.module, node.id))
            elif isinstance(node, ast.Attribute):
                facts.attributes.add(node.attr)
                add(self.resolve_expression(unit.module, node))
                if node.attr == "resolve" and isinstance(node.value, ast.Name) and node.value.id in mod.resolvers:
                    facts.units.update(Unit(unit.module, name) for name in mod.resolvers[node.value.id])
            elif isinstance(node, ast.Import):
                facts.modules.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                source = _absolute(unit.module, mod.path.name == "__init__.py", node.module, node.level)
                facts.modules.add(source)
                facts.modules.update(f"{source}.{alias.name}" for alias in node.names)
        facts.modules = {m for m in facts.modules if self.module(m) is not None}
        return facts

    def reachable(self, module: str, function: str) -> tuple[set[Unit], set[tuple[str, str]]]:
        """The units the handler ``module.function`` can run, and the classes they name."""
        if self.module(module) is None or function not in self.module(module).functions:  # type: ignore[union-attr]
            raise LookupError(f"{module}.{function} is not a top-level function under {self.root}")
        units: set[Unit] = set()
        classes: set[tuple[str, str]] = set()
        attributes: set[str] = set()
        work = [Unit(module, function), Unit(module, "")]
        while work:
            unit = work.pop()
            if unit in units:
                continue
            units.add(unit)
            facts = self.facts(unit)
            work += facts.units
            for name in facts.modules:
                parts = name.split(".")
                work += [Unit(".".join(parts[:i]), "") for i in range(1, len(parts) + 1) if self.module(".".join(parts[:i]))]
            for cls in facts.classes - classes:
                classes.add(cls)
                work.append(Unit(cls[0], cls[1]))
                work += [Unit(cls[0], f"{cls[1]}.{m}") for m in self.methods(*cls) if _dunder(m) or m in attributes]
            for attribute in facts.attributes - attributes:
                attributes.add(attribute)
                work += [Unit(c[0], f"{c[1]}.{attribute}") for c in classes if attribute in self.methods(*c)]
        return units, classes

    # -- AWS calls ----------------------------------------------------------------------------
    def client_factory(self, unit: Unit) -> str | None:
        """The service of a function whose every return is a client-creating call with a literal service."""
        if "." in unit.qualname or not unit.qualname or unit.qualname not in self.module(unit.module).functions:  # type: ignore[union-attr]
            return None
        services = {_created_service(n.value) if n.value is not None else None
                    for n in self.walk(unit) if isinstance(n, ast.Return)}  # fmt: skip
        return services.pop() if len(services) == 1 else None

    def calls(self, handler: str) -> list[Call]:
        """Every AWS call ``handler`` ("package.module.function") can make."""
        module, _, function = handler.rpartition(".")
        units, classes = self.reachable(module, function)
        ordered = sorted(units, key=lambda u: (u.module, u.qualname))
        created = {s for u in ordered for n in self.walk(u) if isinstance(n, ast.Call) for s in [_created_service(n)] if s}
        package_methods = {m for c in classes for m in self.methods(*c)}
        found: list[Call] = []
        for unit in ordered:
            found += _UnitCalls(self, unit, handler, created, package_methods).run()
        return sorted(found, key=lambda c: (c.path, c.line, c.operation or c.method))


class _UnitCalls:
    """The AWS calls in one unit."""

    def __init__(self, program: Program, unit: Unit, handler: str, created: set[str], package_methods: set[str]) -> None:
        self.program, self.unit, self.handler = program, unit, handler
        self.created, self.package_methods = created, package_methods
        self.mod = program.module(unit.module)
        self.path = program.display(self.mod.path)  # type: ignore[union-attr]
        self.nodes = list(program.walk(unit))
        self.env = self._environment()
        self.dicts = self._dict_literals()

    # -- receivers ----------------------------------------------------------------------------
    def _environment(self) -> dict[str, str]:
        env: dict[str, str] = {}
        pairs: list[tuple[ast.expr, ast.expr]] = []
        for node in self.nodes:
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    pairs += _paired(target, node.value)
            elif isinstance(node, (ast.AnnAssign, ast.NamedExpr)) and node.value is not None:
                pairs += _paired(node.target, node.value)
        for _ in range(3):  # a = client("s3"); b = a
            for target, value in pairs:
                service = self.service_of(value, env)
                if service and isinstance(target, ast.Name):
                    env.setdefault(target.id, service)
        return env

    def _named_like(self, name: str) -> str | None:
        for candidate in (name, name.removesuffix("_client")):
            if candidate in self.created:
                return candidate
        return None

    def service_of(self, node: ast.expr, env: dict[str, str] | None = None) -> str | None:
        env = self.env if env is None else env
        if isinstance(node, ast.Call):
            service = _created_service(node)
            if service:
                return service
            target = self.program.resolve_expression(self.unit.module, node.func)
            if target is not None and target[0] == "function":
                return self.program.client_factory(target[1])
            return None
        if isinstance(node, ast.Name):
            return env.get(node.id) or self._named_like(node.id)
        if isinstance(node, ast.Attribute):
            return self._named_like(node.attr)
        return None

    # -- arguments ----------------------------------------------------------------------------
    def _dict_literals(self) -> dict[str, dict[str, Any]]:
        """``params = {...}`` assigned once in the unit, with ``params["Key"] = value`` additions."""
        found: dict[str, dict[str, Any] | None] = {}
        for node in self.nodes:
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                target = node.targets[0]
                if isinstance(target, ast.Name):
                    value = _literal(node.value) if isinstance(node.value, ast.Dict) else None
                    found[target.id] = value if target.id not in found and isinstance(value, dict) else None
        for node in self.nodes:
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if (isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name)
                            and isinstance(found.get(target.value.id), dict)):  # fmt: skip
                        key = target.slice
                        if isinstance(key, ast.Constant) and isinstance(key.value, str):
                            found[target.value.id][key.value] = _literal(node.value)  # type: ignore[index]
                        else:
                            found[target.value.id] = None
            elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in found
                  and node.attr in ("update", "setdefault", "pop", "clear", "popitem")):  # fmt: skip
                found[node.value.id] = None
        return {name: value for name, value in found.items() if value is not None}

    def keywords(self, call: ast.Call) -> dict[str, Any] | None:
        """The call's keyword arguments as values (Unknown where not literal); None when unknowable."""
        params: dict[str, Any] = {}
        for keyword in call.keywords:
            if keyword.arg is not None:
                params[keyword.arg] = _literal(keyword.value)
            elif isinstance(keyword.value, ast.Name) and keyword.value.id in self.dicts:
                params.update(self.dicts[keyword.value.id])
            elif isinstance(keyword.value, ast.Dict) and isinstance(_literal(keyword.value), dict):
                params.update(_literal(keyword.value))
            else:
                return None
        return params

    # -- calls --------------------------------------------------------------------------------
    def run(self) -> list[Call]:
        found: list[Call] = []
        handled: set[int] = set()
        called = {id(n.func) for n in self.nodes if isinstance(n, ast.Call)}
        for node in self.nodes:
            if isinstance(node, ast.Attribute) and id(node) not in called and isinstance(node.ctx, ast.Load):
                found += self._bound_method(node)
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)) or id(node) in handled:
                continue
            inner = node.func.value
            if (node.func.attr == "paginate" and isinstance(inner, ast.Call) and isinstance(inner.func, ast.Attribute)
                    and inner.func.attr == "get_paginator"):  # fmt: skip
                service = self.service_of(inner.func.value)
                if service:
                    handled.add(id(inner))
                    found += self._paginator(node, inner, service)
                continue
            found += self._call(node)
        return found

    def _bound_method(self, node: ast.Attribute) -> list[Call]:
        """``_pages(rekognition.describe_projects, ...)``: an operation passed on to be called elsewhere."""
        service = self.service_of(node.value)
        if service is None or node.attr not in _snake_operations(service):
            return []
        return [Call(self.handler, self.path, node.lineno, service, node.attr, operation_model(service, node.attr).name)]

    def _record(self, node: ast.Call, service: str, method: str, operation: str | None, problems: Iterable[str] = ()) -> Call:
        return Call(self.handler, self.path, node.lineno, service, method, operation, tuple(problems))

    def _operation(self, node: ast.Call, service: str, method: str, name: str) -> tuple[str | None, list[str]]:
        try:
            return operation_model(service, name).name, []
        except ModelError as exc:
            return None, [f"{self.handler}: {self.path}:{node.lineno} calls {service}.{method}, which is not an operation: {exc}"]

    def _validate(self, node: ast.Call, service: str, operation: str, params: dict[str, Any] | None) -> list[str]:
        if params is None:
            return []
        return [f"{self.handler}: {self.path}:{node.lineno} calls {service}.{operation} with an invalid request: {error}"
                for error in validate_request(service, operation, params)]  # fmt: skip

    def _call(self, node: ast.Call) -> list[Call]:
        assert isinstance(node.func, ast.Attribute)
        method, receiver = node.func.attr, node.func.value
        service = self.service_of(receiver)
        if service is None:
            service = self._by_method(receiver, method)
            if service is None:
                return []
        where = f"{self.handler}: {self.path}:{node.lineno}"
        if method in _IGNORED_METHODS:
            return []
        if method in ("get_paginator", "get_waiter"):
            name = _first_literal(node)
            if name is None:
                return [self._record(node, service, method, None, [f"{where} calls {service}.{method} with a non-literal name: not analysable"])]
            operation, problems = (self._paginated if method == "get_paginator" else self._waited)(node, service, name)
            return [self._record(node, service, method, operation, problems)]
        if service == "s3" and method in _TRANSFERS:
            return self._transfer(node, method)
        if method == "generate_presigned_url":
            name = _keyword_literal(node, "ClientMethod") or _first_literal(node)
            if not isinstance(name, str):
                return [self._record(node, service, method, None, [f"{where} presigns a non-literal ClientMethod: not analysable"])]
            operation, problems = self._operation(node, service, method, name)
            return [self._record(node, service, method, operation, problems)]
        operation, problems = self._operation(node, service, method, method)
        if operation is not None:
            if node.args:
                problems.append(f"{where} calls {service}.{operation} with positional arguments; boto3 takes keywords only")
            else:
                problems += self._validate(node, service, operation, self.keywords(node))
        return [self._record(node, service, method, operation, problems)]

    def _by_method(self, receiver: ast.expr, method: str) -> str | None:
        """The last receiver rule: an operation of exactly one created service, on a receiver that is no package object."""
        if isinstance(receiver, ast.Name) and receiver.id in ("self", "cls"):
            return None
        if self.program.resolve_expression(self.unit.module, receiver) is not None or method in self.package_methods:
            return None
        services = [s for s in sorted(self.created) if method in _methods_of(s)]
        return services[0] if len(services) == 1 else None

    def _paginated(self, node: ast.Call, service: str, name: str) -> tuple[str | None, list[str]]:
        operation, problems = self._operation(node, service, f"get_paginator({name!r})", name)
        if operation is not None:
            try:
                _session().get_paginator_model(service).get_paginator(operation)
            except (ValueError, DataNotFoundError, UnknownServiceError):
                problems.append(f"{self.handler}: {self.path}:{node.lineno}: {service} has no paginator for {operation}")
        return operation, problems

    def _waited(self, node: ast.Call, service: str, name: str) -> tuple[str | None, list[str]]:
        try:
            waiter = _session().get_waiter_model(service).get_waiter("".join(p[:1].upper() + p[1:] for p in name.split("_")))
        except (ValueError, DataNotFoundError, UnknownServiceError):
            return None, [f"{self.handler}: {self.path}:{node.lineno}: {service} has no waiter {name!r}"]
        return operation_model(service, waiter.operation).name, []

    def _paginator(self, node: ast.Call, inner: ast.Call, service: str) -> list[Call]:
        name = _first_literal(inner)
        if name is None:
            return [self._record(inner, service, "get_paginator", None,
                                 [f"{self.handler}: {self.path}:{inner.lineno} calls {service}.get_paginator with a non-literal name"])]  # fmt: skip
        operation, problems = self._paginated(inner, service, name)
        if operation is not None and not problems:
            params = None if node.args else self.keywords(node)
            if params is not None:
                params.pop("PaginationConfig", None)
            problems += self._validate(node, service, operation, params)
        return [self._record(inner, service, "get_paginator", operation, problems)]

    def _transfer(self, node: ast.Call, method: str) -> list[Call]:
        from s3transfer.manager import TransferManager

        operations, positional, target = _TRANSFERS[method]
        where = f"{self.handler}: {self.path}:{node.lineno} calls s3.{method}"
        problems: list[str] = []
        names = list(positional[: len(node.args)])
        if len(node.args) > len(positional) + len(_TRANSFER_OPTIONAL):
            problems.append(f"{where} with {len(node.args)} positional arguments")
        names += [k.arg for k in node.keywords if k.arg is not None]
        allowed = {*positional, *_TRANSFER_OPTIONAL}
        problems += [f"{where} with an unknown argument {n!r} (takes {', '.join(sorted(allowed))})" for n in names if n not in allowed]
        missing = [p for p in positional if p not in names] if all(k.arg is not None for k in node.keywords) else []
        problems += [f"{where} without {p}" for p in missing]
        extra = next((k.value for k in node.keywords if k.arg == "ExtraArgs"), None)
        extra_value = _literal(extra) if extra is not None else None
        if isinstance(extra_value, dict):
            permitted = TransferManager.ALLOWED_UPLOAD_ARGS if target == "PutObject" else TransferManager.ALLOWED_DOWNLOAD_ARGS
            problems += [f"{where} with ExtraArgs {k!r}, which {method} does not accept" for k in extra_value if k not in permitted]
            request = {"Bucket": Unknown(), "Key": Unknown(), **extra_value}
            problems += [f"{where} with invalid ExtraArgs: {e}" for e in validate_request("s3", target, request)]
        return [self._record(node, "s3", method, operation, problems if i == 0 else ()) for i, operation in enumerate(operations)]


# -- small syntax helpers ---------------------------------------------------------------------------
def _absolute(module: str, is_package: bool, name: str | None, level: int) -> str:
    if not level:
        return name or ""
    parts = module.split(".")
    base = parts if is_package else parts[:-1]
    base = base[: len(base) - (level - 1)] if level > 1 else base
    return ".".join([*base, name] if name else base)


def _callee(call: ast.Call) -> str:
    func = call.func
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""


def _decorator_owner(decorator: ast.expr) -> str | None:
    node = decorator.func if isinstance(decorator, ast.Call) else decorator
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        return node.value.id
    return None


def _dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__")


def _first_literal(call: ast.Call) -> Any:
    if call.args and isinstance(call.args[0], ast.Constant):
        return call.args[0].value
    return None


def _keyword_literal(call: ast.Call, name: str) -> Any:
    for keyword in call.keywords:
        if keyword.arg == name and isinstance(keyword.value, ast.Constant):
            return keyword.value.value
    return None


def _created_service(node: ast.expr) -> str | None:
    """``client("s3")``, ``boto3.client("s3", ...)``, ``session.create_client(service_name="s3")``: "s3"."""
    if not isinstance(node, ast.Call) or _callee(node) not in _CLIENT_FACTORIES:
        return None
    name = _first_literal(node)
    if name is None:
        name = _keyword_literal(node, "service_name")
    return name if isinstance(name, str) and name in _services() else None


def _paired(target: ast.expr, value: ast.expr) -> list[tuple[ast.expr, ast.expr]]:
    if isinstance(target, (ast.Tuple, ast.List)) and isinstance(value, (ast.Tuple, ast.List)) and len(target.elts) == len(value.elts):
        return [pair for t, v in zip(target.elts, value.elts) for pair in _paired(t, v)]
    return [(target, value)]


def _literal(node: ast.expr) -> Any:
    """A literal's value; containers element-wise; anything computed at run time is Unknown()."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Dict):
        if any(k is None or not (isinstance(k, ast.Constant) and isinstance(k.value, str)) for k in node.keys):
            return Unknown("mapping")
        return {k.value: _literal(v) for k, v in zip(node.keys, node.values)}  # type: ignore[union-attr]
    if isinstance(node, (ast.List, ast.Tuple)):
        if any(isinstance(e, ast.Starred) for e in node.elts):
            return Unknown("list")
        return [_literal(e) for e in node.elts]
    if isinstance(node, ast.JoinedStr):
        return Unknown("string")
    return Unknown()


# -- IAM ------------------------------------------------------------------------------------------
def _pattern(text: str) -> re.Pattern[str]:
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in text), re.IGNORECASE | re.DOTALL)


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [] if value is None else [value]


def _matches(patterns: Iterable[Any], action: str) -> bool:
    return any(isinstance(p, str) and _pattern(p).fullmatch(action) for p in patterns)


def s3_resource_level(action: str) -> str | None:
    """"bucket" or "object" for an S3 action whose resource must be a bucket or an object ARN; None otherwise."""
    prefix, _, name = action.partition(":")
    if prefix.lower() != "s3":
        return None
    if "Bucket" in name:
        return "bucket"
    if "Object" in name or "MultipartUpload" in name:
        return "object"
    return None


def _can_name(resource: Any, level: str) -> bool:
    if resource == "*":
        return True
    if not isinstance(resource, str) or ":s3:::" not in resource:
        return False
    rest = resource.split(":s3:::", 1)[1]
    return "/" not in rest if level == "bucket" else ("/" in rest or "*" in rest)


@dataclass
class Grant:
    allowed: bool
    reason: str = ""


class Role:
    """The identity-based statements CloudFormation attaches to one AWS::IAM::Role of the template."""

    def __init__(self, template: dict[str, Any], logical_id: str) -> None:
        self.logical_id = logical_id
        resolver = Template(template)
        resources = template.get("Resources", {})
        role = resources[logical_id]
        documents: list[Any] = [p.get("PolicyDocument") for p in role.get("Properties", {}).get("Policies", [])]
        managed = {a["Ref"] for a in role.get("Properties", {}).get("ManagedPolicyArns", []) if isinstance(a, dict) and "Ref" in a}
        self.sources: list[str] = []
        for lid, resource in resources.items():
            kind, props = resource.get("Type"), resource.get("Properties", {})
            attached = (
                (kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy") and {"Ref": logical_id} in props.get("Roles", []))
                or (kind == "AWS::IAM::ManagedPolicy" and lid in managed)
                or (kind == "AWS::IAM::RolePolicy" and props.get("RoleName") == {"Ref": logical_id})
            )
            if attached:
                documents.append(props.get("PolicyDocument"))
                self.sources.append(lid)
        self.statements: list[dict[str, Any]] = [
            statement for document in documents for statement in _listed(resolver.resolve(document or {}).get("Statement"))
        ]

    def _applies(self, statement: dict[str, Any], action: str) -> bool:
        if "NotAction" in statement:
            return not _matches(_listed(statement["NotAction"]), action)
        return _matches(_listed(statement.get("Action")), action)

    def allows(self, action: str) -> Grant:
        for statement in self.statements:
            if (statement.get("Effect") == "Deny" and self._applies(statement, action) and "Condition" not in statement
                    and "*" in _listed(statement.get("Resource"))):  # fmt: skip
                return Grant(False, f"the role {self.logical_id} denies it")
        allowing = [s for s in self.statements if s.get("Effect") == "Allow" and self._applies(s, action)]
        if not allowing:
            return Grant(False, f"the role {self.logical_id} does not allow it")
        level = s3_resource_level(action)
        if level is None:
            return Grant(True)
        for statement in allowing:
            if "NotResource" in statement or any(_can_name(r, level) for r in _listed(statement.get("Resource"))):
                return Grant(True)
        resources = sorted({str(r) for s in allowing for r in _listed(s.get("Resource"))})
        arn = "arn:aws:s3:::<bucket>" if level == "bucket" else "arn:aws:s3:::<bucket>/<key>"
        return Grant(False, f"the role {self.logical_id} allows it only on {', '.join(resources)}, none of which can be a "
                            f"{level} ARN ({arn})")  # fmt: skip


# -- the deployed functions -----------------------------------------------------------------------
@dataclass(frozen=True)
class DeployedFunction:
    logical_id: str
    handler: str
    role: str | None  # None: not a role of this template
    calls: tuple[Call, ...]

    def operations(self) -> set[tuple[str, str]]:
        return {(c.service, c.operation) for c in self.calls if c.operation}


def lambda_handler_package(handler: str, root: Path = LAMBDAS) -> str | None:
    """The lambdas/<package> of a Handler such as "workflow.handler.prepare", or None (CDK's own handlers)."""
    package = handler.split(".")[0]
    return package if (root / package).is_dir() else None


def deployed_functions(template: dict[str, Any], root: Path = LAMBDAS) -> list[DeployedFunction]:
    programs: dict[str, Program] = {}
    found = []
    for logical_id, resource in sorted(template.get("Resources", {}).items()):
        if resource.get("Type") != "AWS::Lambda::Function":
            continue
        props = resource.get("Properties", {})
        handler = props.get("Handler")
        package = lambda_handler_package(handler, root) if isinstance(handler, str) else None
        if package is None:
            continue
        role = props["Role"]["Fn::GetAtt"][0] if isinstance(props.get("Role"), dict) and "Fn::GetAtt" in props["Role"] else None
        program = programs.setdefault(package, Program(package, root))
        found.append(DeployedFunction(logical_id, handler, role, tuple(program.calls(handler))))
    return found


def call_problems(functions: Iterable[DeployedFunction]) -> list[str]:
    return list(dict.fromkeys(problem for f in functions for call in f.calls for problem in call.problems))


def grant_violations(template: dict[str, Any], functions: Iterable[DeployedFunction]) -> list[str]:
    violations: list[str] = []
    for function in functions:
        role = Role(template, function.role) if function.role in template.get("Resources", {}) else None
        for call in function.calls:
            for action in call.actions:
                grant = role.allows(action) if role else Grant(False, "its role is not defined in this template")
                if not grant.allowed:
                    violations.append(f"{function.handler}: {call.where} calls {call.service}.{call.operation}, "
                                      f"which needs {action}; {grant.reason}")  # fmt: skip
    return list(dict.fromkeys(violations))


def inventory_text(functions: Iterable[DeployedFunction]) -> str:
    lines = []
    for function in functions:
        lines.append(f"{function.handler} ({function.logical_id}, role {function.role}):")
        for call in function.calls:
            lines.append(f"  {call.where:<40} {call.service}.{call.operation or call.method}"
                         f" -> {', '.join(call.actions) or '?'}")  # fmt: skip
    return "\n".join(lines)
