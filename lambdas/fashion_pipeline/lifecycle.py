"""The deployed model's lifecycle: the model pointer, and when an idle model is stopped.

A running Custom Labels model bills every inference unit by the hour (about $4 each) whether
it answers requests or not, so the inference API records when it was last used and a
scheduled function stops the model after a quiet spell. The decision is a pure function of
the model's status, its last activity, since when it runs and the time now. No AWS here.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Mapping

RUNNING = "RUNNING"
STARTING = "STARTING"
STOPPING = "STOPPING"
STOPPED = "STOPPED"
NONE = "NONE"  # nothing deployed: the pointer says {"status": "none"} or does not exist
# Statuses in which a model version bills by the inference-unit hour, or is about to.
BILLING = (RUNNING, STARTING)

# Timestamps from the future are clock skew when they are this close, nonsense beyond.
MAX_CLOCK_SKEW = timedelta(minutes=5)

# How long a client should wait before retrying, by model status (seconds). Starting a Custom
# Labels model takes minutes; a stopping model must reach STOPPED before it can start again.
RETRY_AFTER = {STARTING: 60, STOPPING: 60}
RETRY_AFTER_DEFAULT = 300


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


def models_to_stop(descriptions: Iterable[Mapping[str, Any]], *, keep: str) -> list[str]:
    """The versions (DescribeProjectVersions descriptions) to stop when ``keep`` takes over:
    every other one that is running or starting, in the order given."""
    return [
        str(d["ProjectVersionArn"]) for d in descriptions
        if d.get("ProjectVersionArn") and d["ProjectVersionArn"] != keep and d.get("Status") in BILLING
    ]


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


def retry_after(status: str) -> int:
    return RETRY_AFTER.get(status, RETRY_AFTER_DEFAULT)


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


def _utc(moment: datetime) -> datetime:
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)
