"""Batch jobs that share a model: who may start it, and which job stops it.

A job that finds its dataset's model STOPPED starts it and should stop it when it ends; a job
that finds it RUNNING uses it as it is. Two jobs at once on one model broke that rule: the one
that started the model stopped it under the other, whose remaining images became
``model_not_running`` lines. So every job holds a *lease* on the model while it runs, kept on
the model's item of the API's activity table (the same item the idle auto-stop reads):

- ``batch_jobs``: a string set, one lease per job that uses the model (``lease()``);
- ``batch_lease_version``: a number every lease change adds one to, the condition of a release;
- ``batch_started_by``/``batch_started_at``: the job that claimed the start of the model;
- ``batch_released_by``/``batch_released_at``: the job that decided to stop it, and when.

(``stopped_at`` is the API's and the idle auto-stop's record of their stops: a start claimed
before the model's last recorded stop belongs to an earlier run of the model, not this one.)

The rule: the start is claimed by one job; **the last job out stops the model if a batch job
started it**, whether or not that job is itself the one that started it. A job whose lease
expired (its execution was aborted or timed out, so it never released) holds nothing. A
RUNNING model released moments ago is about to be stopped, so a new job refuses to join it.

The decisions are here, without I/O; ``batch.leases`` does the DynamoDB calls.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# The batch machine's timeout (infrastructure/batch.py uses this value): no execution runs
# longer, so a lease this old belongs to an execution that ended without releasing it.
LEASE_SECONDS = 7 * 24 * 3600
# A claim to start a STOPPED model older than this is stale: the job that claimed it calls
# StartProjectVersion within seconds of its claim, and after that the model is not STOPPED.
START_CLAIM_SECONDS = 600
# How long a RUNNING model released by the job that stops it counts as stopping: the release
# and the StopProjectVersion call are two states apart (well under a minute, retries included).
STOP_GRACE_SECONDS = 300

LEASES = "batch_jobs"
VERSION = "batch_lease_version"
STARTED_BY, STARTED_AT = "batch_started_by", "batch_started_at"
RELEASED_BY, RELEASED_AT = "batch_released_by", "batch_released_at"
STOPPED_AT = "stopped_at"  # written by the API and the idle auto-stop (inference.activity)
# The two writes of one lease, with ":lease" (a one-element string set) and ":one" (N 1): every
# change of the leases adds one to the version. The state machine's own drop (infrastructure/batch.py)
# writes the same expression.
LEASE_NAMES = {"#leases": LEASES, "#version": VERSION}
HOLD_UPDATE = "ADD #leases :lease, #version :one"
DROP_UPDATE = "DELETE #leases :lease ADD #version :one"


def lease(execution: str, started_epoch: int) -> str:
    """A job's lease: when it expires, then the execution's ARN. It is made from the execution's
    start time, not the clock, so a retried prepare adds the same lease, not a second one."""
    return f"{started_epoch + LEASE_SECONDS:010d} {execution}"


def lease_holder(value: str) -> str:
    return value.split(" ", 1)[-1]


def lease_expires(value: str) -> int:
    head = value.split(" ", 1)[0]
    return int(head) if head.isdigit() else 0  # unreadable: expired (it never blocks a stop)


@dataclass(frozen=True)
class LeaseState:
    """The lease attributes of a model's activity item (DynamoDB's typed form, as returned)."""

    leases: tuple[str, ...] = ()
    version: int = 0
    started_by: str | None = None
    started_at: int | None = None
    released_by: str | None = None
    released_at: int | None = None
    stopped_at: int | None = None

    @classmethod
    def of(cls, item: Mapping[str, Any] | None) -> LeaseState:
        item = item or {}

        def text(name: str) -> str | None:
            value = item.get(name) or {}
            return value.get("S") if isinstance(value, Mapping) else None

        def number(name: str) -> int | None:
            value = item.get(name) or {}
            found = value.get("N") if isinstance(value, Mapping) else None
            return int(float(found)) if found is not None else None

        leases = item.get(LEASES) or {}
        return cls(
            leases=tuple(sorted(leases.get("SS") or ())) if isinstance(leases, Mapping) else (),
            version=number(VERSION) or 0, started_by=text(STARTED_BY), started_at=number(STARTED_AT),
            released_by=text(RELEASED_BY), released_at=number(RELEASED_AT), stopped_at=number(STOPPED_AT),
        )

    @property
    def starter(self) -> str | None:
        """The job that started the model's current run, if a batch job did: a claim older than
        the last recorded stop (the job died, the auto-stop stopped the model, someone started
        it again) is none."""
        if self.started_by is None or (self.stopped_at is not None and self.stopped_at >= (self.started_at or 0)):
            return None
        return self.started_by

    def holders(self, now: int, *, other_than: str | None = None) -> tuple[str, ...]:
        """The executions whose leases are live at ``now``, but ``other_than``."""
        return tuple(sorted({lease_holder(v) for v in self.leases if lease_expires(v) > now} - {other_than}))


@dataclass(frozen=True)
class Release:
    """What a job's release decided: stop the model, or leave it running, and why."""

    stop: bool
    reason: str
    others: tuple[str, ...] = ()
    claim: bool = False  # the job must still win the conditional write that makes the stop its own

    def to_dict(self) -> dict[str, Any]:
        return {"stop": self.stop, "reason": self.reason, "others": len(self.others)}


def release_decision(state: LeaseState, execution: str, now: int) -> Release:
    """Whether the job, leaving, stops the model (its own lease in ``state`` or not)."""
    if state.released_by == execution:
        return Release(True, "this job decided to stop the model (a retried release)")
    others = state.holders(now, other_than=execution)
    if others:
        return Release(False, f"{len(others)} other batch job(s) still use the model; the last one to end stops it", others)
    starter = state.starter
    if starter is None:
        return Release(False, "no batch job started the model: it was running (or starting) before, and is left so")
    who = "this job" if starter == execution else f"batch job {starter.rsplit(':', 1)[-1]}"
    return Release(True, f"{who} started the model and no other batch job uses it", claim=True)


def joining_refusal(state: LeaseState, status: str, execution: str, now: int) -> str | None:
    """Why a job may not use a model it found RUNNING, or None: a job that ended moments ago
    released it and is stopping it."""
    if status != "RUNNING" or state.released_at is None or state.released_by in (None, execution):
        return None
    if now - state.released_at >= STOP_GRACE_SECONDS:
        return None
    who = state.released_by.rsplit(":", 1)[-1]
    return (f"the model is being stopped by batch job {who}, which started it and has just ended; "
            "run the job again once the model is STOPPED (it is started again for the job)")
