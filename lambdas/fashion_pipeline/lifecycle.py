"""The models' lifecycle: the model pointer, and when an idle model is stopped.

A running Custom Labels model bills every inference unit by the hour (about $4 each) whether
it answers requests or not, so the inference API records when it was last used and a
scheduled function stops any model of the pipeline's projects after a quiet spell: the
deployed one, and any other left running (started from the console, kept by a deployment).
The decisions are pure functions of the models' statuses, what was recorded about them and
the time now. No AWS here.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Mapping

from .layout import PROJECT_PREFIX, dataset_of_pointer

RUNNING = "RUNNING"
STARTING = "STARTING"
STOPPING = "STOPPING"
STOPPED = "STOPPED"
NONE = "NONE"  # nothing deployed: the pointer says {"status": "none"} or does not exist
NOT_FOUND = "NOT_FOUND"  # the pointer names a version Rekognition does not know (deleted)
# Statuses in which a model version bills by the inference-unit hour, or is about to.
BILLING = (RUNNING, STARTING)

# What an inference unit costs an hour in us-east-1; other regions differ, hence "estimate".
USD_PER_INFERENCE_UNIT_HOUR = 4.0
COST_NOTE = (f"estimated_usd_per_hour is an estimate: MinInferenceUnits x ${USD_PER_INFERENCE_UNIT_HOUR:g} per "
             "inference-unit hour, the us-east-1 price; other regions differ, and auto-scaled units add to it.")

# Timestamps from the future are clock skew when they are this close, nonsense beyond.
MAX_CLOCK_SKEW = timedelta(minutes=5)

# How long a client should wait before retrying, by model status (seconds), for the statuses
# where waiting helps: starting a Custom Labels model takes minutes, and a model found RUNNING
# after a refused call has just become available. STOPPED, STOPPING, FAILED and the rest do
# not become RUNNING by themselves, so they have none (RFC 9110 §10.2.3: Retry-After on a 503
# is how long the service is expected to be unavailable).
RETRY_AFTER = {STARTING: 60, RUNNING: 5}


class PointerError(ValueError):
    """The model pointer is not the JSON the training workflow writes."""


@dataclass(frozen=True, slots=True)
class ModelPointer:
    """The SSM parameter the training workflow publishes when it deploys a model."""

    project_version_arn: str
    project_arn: str
    version_name: str
    dataset: str | None = None
    f1: float | None = None
    inference_units: int = 1
    deployed_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "project_version_arn": self.project_version_arn,
            "project_arn": self.project_arn,
            "version_name": self.version_name,
            "dataset": self.dataset,
            "f1": self.f1,
            "inference_units": self.inference_units,
            "deployed_at": iso(self.deployed_at),
        }


def parse_pointer(text: str | None) -> ModelPointer | None:
    """The pointer's JSON -> ModelPointer, or None when no model is deployed."""
    if text is None or not text.strip():
        return None
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise PointerError(f"model pointer is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise PointerError("model pointer must be a JSON object")
    if str(doc.get("status", "")).lower() == "none" or not doc.get("project_version_arn"):
        return None
    missing = [key for key in ("project_arn", "version_name") if not doc.get(key)]
    if missing:
        raise PointerError(f"model pointer lacks {', '.join(missing)}")
    try:
        units = int(doc.get("inference_units") or 1)
        f1 = None if doc.get("f1") is None else float(doc["f1"])
    except (TypeError, ValueError):
        raise PointerError("model pointer has a non-numeric f1 or inference_units") from None
    return ModelPointer(
        project_version_arn=str(doc["project_version_arn"]),
        project_arn=str(doc["project_arn"]),
        version_name=str(doc["version_name"]),
        dataset=doc.get("dataset"),
        f1=f1,
        inference_units=max(units, 1),
        deployed_at=parse_time(doc.get("deployed_at")),
    )


@dataclass(frozen=True)
class Pointers:
    """Every dataset's model pointer, as listed under the pointers' prefix: ``live`` by dataset,
    and ``broken`` (the reason, by dataset) for a parameter that is not a pointer's JSON. A
    pointer saying ``{"status": "none"}`` is no live model, and in neither."""

    live: Mapping[str, ModelPointer] = field(default_factory=dict)
    broken: Mapping[str, str] = field(default_factory=dict)

    @property
    def datasets(self) -> set[str]:
        """Every dataset with a pointer, readable or not."""
        return set(self.live) | set(self.broken)

    def keeping(self, earlier: Pointers) -> Pointers:
        """These pointers, except that a dataset whose pointer became unreadable keeps its
        earlier live one: a botched write must not take a serving model away."""
        kept = {dataset: earlier.live[dataset] for dataset in self.broken if dataset in earlier.live}
        if not kept:
            return self
        return Pointers({**self.live, **kept}, {d: r for d, r in self.broken.items() if d not in kept})

    def of(self, dataset: str) -> ModelPointer | None:
        """``dataset``'s live model; a broken pointer raises PointerError naming the dataset."""
        if dataset in self.broken:
            raise PointerError(f"the model pointer of dataset {dataset!r} is unreadable: {self.broken[dataset]}")
        return self.live.get(dataset)


def pointer_json(pointer: ModelPointer) -> str:
    """The pointer's parameter value, as the training workflow writes it (``status`` RUNNING:
    a pointer is moved only to a running model)."""
    return json.dumps({**pointer.to_dict(), "status": RUNNING}, separators=(",", ":"))


# What promoting a version (``fashion-pipeline deploy``) does from each status: start it and
# wait for RUNNING, wait for it to finish starting, or move the pointer at once. Any other
# status (training, training failed, stopping, deleting, copying ...) cannot become the live
# model now. The startable statuses are StartProjectVersion's (the API's POST /model/start).
STARTABLE = frozenset({"TRAINING_COMPLETED", STOPPED, "FAILED"})


def promotion(status: str) -> str:
    """``"start"``, ``"wait"`` or ``"move"`` for a version in ``status``; PromotionRefused else."""
    if status in STARTABLE:
        return "start"
    if status == STARTING:
        return "wait"
    if status == RUNNING:
        return "move"
    hint = " (wait until it is STOPPED, then deploy it)" if status == STOPPING else ""
    raise PromotionRefused(f"a model version that is {status} cannot be deployed{hint}; deployable: "
                           f"{', '.join(sorted(STARTABLE | {STARTING, RUNNING}))}")


class PromotionRefused(ValueError):
    """The version's status does not allow deploying it."""


def promoted_pointer(description: Mapping[str, Any], *, project_arn: str, dataset: str, inference_units: int, now: datetime) -> ModelPointer:
    """The pointer naming a version (its DescribeProjectVersions description) as ``dataset``'s
    live model from ``now`` (the auto-stop counts its idle time from then). The project's ARN
    is its own (it carries the project's creation time), not a prefix of the version's."""
    arn = str(description["ProjectVersionArn"])
    f1 = (description.get("EvaluationResult") or {}).get("F1Score")
    return ModelPointer(project_version_arn=arn, project_arn=project_arn, version_name=version_name(arn),
                        dataset=dataset, f1=None if f1 is None else float(f1), inference_units=max(int(inference_units), 1),
                        deployed_at=_utc(now))  # fmt: skip


def parse_pointers(prefix: str, parameters: Iterable[Mapping[str, Any]]) -> Pointers:
    """SSM's GetParametersByPath ``Parameters`` (``Name``, ``Value``) -> ``Pointers``; names
    outside the prefix's one level are not pointers and are left out."""
    live: dict[str, ModelPointer] = {}
    broken: dict[str, str] = {}
    for parameter in parameters:
        dataset = dataset_of_pointer(prefix, str(parameter.get("Name") or ""))
        if dataset is None:
            continue
        try:
            pointer = parse_pointer(parameter.get("Value"))
        except PointerError as exc:
            broken[dataset] = str(exc)
            continue
        if pointer is not None:
            live[dataset] = pointer
    return Pointers(live, broken)


class DatasetRequired(ValueError):
    """Several datasets have a live model, the request names none and none is the default."""

    def __init__(self, datasets: Iterable[str]) -> None:
        self.datasets = sorted(datasets)
        super().__init__(f"several datasets have a live model ({', '.join(self.datasets)}) and no default dataset is "
                         "configured: name one with ?dataset=NAME")


def choose_dataset(requested: str | None, default: str | None, live: Iterable[str]) -> str | None:
    """The dataset a request is about: the one it names, else the configured default, else the
    one dataset with a live model; None when no dataset has one. Several, with no default and
    none named, raise ``DatasetRequired``: answering with an arbitrary one would be a guess."""
    if requested:
        return requested
    if default:
        return default
    datasets = sorted(live)
    if len(datasets) > 1:
        raise DatasetRequired(datasets)
    return datasets[0] if datasets else None


def models_to_stop(descriptions: Iterable[Mapping[str, Any]], *, keep: str) -> list[str]:
    """The versions (DescribeProjectVersions descriptions) to stop when ``keep`` takes over:
    every other one that is running or starting, in the order given."""
    return [model["arn"] for model in running_models(descriptions, exclude=keep)]


def project_name(arn: str) -> str:
    """The project's name in a project or model version ARN (``...:project/<name>/...``)."""
    return arn.split(":project/", 1)[-1].split("/", 1)[0]


def version_name(arn: str) -> str:
    """The version's name in a model version ARN (``...:project/<p>/version/<name>/<created>``);
    DescribeProjectVersions gives only the ARN."""
    return arn.split("/version/", 1)[-1].split("/", 1)[0]


def watched_projects(project_arns: Iterable[str], deployed: Iterable[ModelPointer]) -> list[str]:
    """The projects whose models the pipeline answers for, each once: the deployed models'
    first (even when listing the projects failed), then every one named PROJECT_PREFIX..."""
    found: list[str] = []
    for pointer in deployed:
        if pointer.project_arn not in found:
            found.append(pointer.project_arn)
    for arn in project_arns:
        if project_name(arn).startswith(PROJECT_PREFIX) and arn not in found:
            found.append(arn)
    return found


def running_models(descriptions: Iterable[Mapping[str, Any]], *, exclude: str | None) -> list[dict[str, Any]]:
    """What bills besides ``exclude``: every RUNNING or STARTING version (DescribeProjectVersions
    descriptions), with its inference units and an hourly cost estimate (see COST_NOTE)."""
    running = []
    for d in descriptions:
        arn = d.get("ProjectVersionArn")
        if not arn or arn == exclude or d.get("Status") not in BILLING:
            continue
        units = d.get("MinInferenceUnits")
        running.append({
            "version": version_name(arn), "arn": arn, "project": project_name(arn), "status": d["Status"],
            "inference_units": units, "estimated_usd_per_hour": units * USD_PER_INFERENCE_UNIT_HOUR if units else None,
        })  # fmt: skip
    return running


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 string (``Z`` or an offset; naive means UTC) or epoch seconds -> aware UTC."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            return None
        return datetime.fromtimestamp(value, timezone.utc)
    else:
        text = str(value).strip()
        try:
            return datetime.fromtimestamp(float(text), timezone.utc)
        except ValueError:
            pass
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)


def iso(moment: datetime | None) -> str | None:
    """UTC, ``Z``-suffixed, to the millisecond when there are fractions of a second."""
    if moment is None:
        return None
    utc = moment.astimezone(timezone.utc)
    return utc.isoformat(timespec="milliseconds" if utc.microsecond else "seconds").replace("+00:00", "Z")


def latest(*moments: datetime | None) -> datetime | None:
    known = [m for m in moments if m is not None]
    return max(known) if known else None


def retry_after(status: str) -> int | None:
    """Seconds until a model of ``status`` is worth asking again; None when waiting does not help."""
    return RETRY_AFTER.get(status)


@dataclass(frozen=True, slots=True)
class Decision:
    stop: bool
    reason: str
    idle_seconds: float | None = None  # since the reference moment, when there is one
    since: datetime | None = None  # the reference: last activity or start, whichever is later

    def to_dict(self) -> dict[str, Any]:
        return {"stop": self.stop, "reason": self.reason, "idle_seconds": self.idle_seconds, "since": iso(self.since)}


def idle_decision(
    status: str,
    last_activity: datetime | None,
    running_since: datetime | None,
    now: datetime,
    idle_minutes: int,
) -> Decision:
    """Whether to stop the model now.

    Only a RUNNING model is ever stopped. The idle time counts from the later of its last
    detection and the moment it started running (a model started a minute ago after a week
    without requests is not idle), and the model is stopped once that reaches ``idle_minutes``.
    A reference moment up to MAX_CLOCK_SKEW in the future counts as now (the writer's clock is
    ahead); one further ahead is ignored as nonsense, so a bad timestamp cannot keep a model
    billing forever. With no usable reference at all the model is kept: the caller should
    record when it first saw the model running and decide on the next round.
    """
    if idle_minutes < 1:
        raise ValueError(f"idle_minutes must be at least 1, got {idle_minutes}")
    if status != RUNNING:
        return Decision(False, f"model is {status}; only a RUNNING model is stopped")
    now = _utc(now)
    ignored = []
    usable = []
    for name, moment in (("last activity", last_activity), ("running since", running_since)):
        if moment is None:
            continue
        moment = _utc(moment)
        if moment - now > MAX_CLOCK_SKEW:
            ignored.append(f"{name} {iso(moment)} is in the future")
        else:
            usable.append(min(moment, now))
    note = f" (ignored: {'; '.join(ignored)})" if ignored else ""
    if not usable:
        return Decision(False, f"no known start or activity time; keeping the model for now{note}")
    since = max(usable)
    idle = (now - since).total_seconds()
    window = idle_minutes * 60
    if idle >= window:
        return Decision(True, f"idle for {idle / 60:.1f} min (limit {idle_minutes} min){note}", idle, since)
    return Decision(False, f"active {idle / 60:.1f} min ago (limit {idle_minutes} min){note}", idle, since)


@dataclass(frozen=True, slots=True)
class Watch:
    """What the auto-stop makes of one model version this round."""

    arn: str
    status: str
    deployed: bool  # the version the model pointer names
    decision: Decision
    last_activity: datetime | None = None
    running_since: datetime | None = None
    record: dict[str, Any] = field(default_factory=dict)  # activity attributes that changed

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.arn,
            "version": version_name(self.arn),
            "project": project_name(self.arn),
            "status": self.status,
            "deployed": self.deployed,
            "last_activity": iso(self.last_activity),
            "running_since": iso(self.running_since),
            **self.decision.to_dict(),
        }


def watch(
    project_arn: str,
    descriptions: Iterable[Mapping[str, Any]],
    activity: Mapping[str, Mapping[str, Any]],
    *,
    deployed: ModelPointer | None,
    now: datetime,
    idle_minutes: int,
) -> list[Watch]:
    """The auto-stop's round over one project: its versions (DescribeProjectVersions
    descriptions) with what the activity table records about each, by version ARN.

    Looked at: the deployed version in any status (NOT_FOUND when its project no longer lists
    it), every RUNNING or STARTING one, and one that stopped since it was recorded billing (so
    that a later start counts afresh). Each RUNNING one gets ``idle_decision`` from its own
    records: its last request through the API, and since when it runs, which is for the
    deployed version the latest of its deployment, its start by the API and its first
    sighting RUNNING after another status, and for any other the later of its start by the
    API and its first sighting RUNNING by the auto-stop. A version never seen before (started
    from the console, say) thus gets its full idle window. STARTING ones are recorded, and
    stopped once RUNNING if still unused.
    """
    watches = []
    deployed_listed = False
    for d in descriptions:
        arn = d.get("ProjectVersionArn")
        if not arn:
            continue
        mine = deployed if deployed is not None and arn == deployed.project_version_arn else None
        deployed_listed = deployed_listed or mine is not None
        found = _watch(arn, str(d.get("Status") or "UNKNOWN"), activity.get(arn) or {}, mine, now, idle_minutes)
        if found is not None:
            watches.append(found)
    if deployed is not None and deployed.project_arn == project_arn and not deployed_listed:
        item = activity.get(deployed.project_version_arn) or {}
        watches.append(_watch(deployed.project_version_arn, NOT_FOUND, item, deployed, now, idle_minutes))
    return watches


def _watch(arn: str, status: str, item: Mapping[str, Any], deployed: ModelPointer | None, now: datetime, idle_minutes: int) -> Watch | None:
    previous = item.get("observed_status")
    if deployed is None and status not in BILLING:
        if previous not in BILLING:
            return None  # nothing bills, and nothing recorded says it did
        # Stopped by someone else since the last round: recorded, so a later start counts afresh.
        return Watch(arn, status, False, idle_decision(status, None, None, now, idle_minutes), record={"observed_status": status})
    record: dict[str, Any] = {}
    seen_running = parse_time(item.get("running_seen_at"))
    # Started since the last round by someone other than the API, or (not the deployed
    # version, whose deployment time is known) never seen before.
    if status == RUNNING and previous != RUNNING and (previous is not None or deployed is None):
        seen_running = now
        record["running_seen_at"] = int(now.timestamp())
    last_activity = parse_time(item.get("last_request_at"))
    running_since = latest(deployed.deployed_at if deployed else None, parse_time(item.get("started_at")), seen_running)
    if status == RUNNING and last_activity is None and running_since is None:
        # Nothing says since when: count from now, and decide on a later round.
        running_since = now
        record["running_seen_at"] = int(now.timestamp())
    if status != previous:
        record["observed_status"] = status
    decision = idle_decision(status, last_activity, running_since, now, idle_minutes)
    return Watch(arn, status, deployed is not None, decision, last_activity, running_since, record)


def _utc(moment: datetime) -> datetime:
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)
