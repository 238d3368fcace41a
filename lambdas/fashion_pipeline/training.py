"""Training run options, names and the evaluation report: plain Python shared by the
workflow Lambdas and the CLI."""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from .layout import RUNS_PREFIX, project_name
from .labels import DEFAULT_MAPPING, LabelCatalogue, LabelMappingError

DATASET_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")

# An execution holds at most 25,000 history events; one more fails it with an error no Catch
# sees, skipping the failure path (Step Functions quotas: "Maximum execution history size",
# https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html). Every polling loop
# of the training workflow is bounded by a poll count that fits this budget.
HISTORY_EVENT_LIMIT = 25_000
MAX_TRAINING_TIMEOUT_HOURS = 240.0
MAX_WAIT_TIMEOUT_MINUTES = 720.0
# The longest run any options allow: training and the four other waits at their bounds, plus an
# hour for the steps between them. The state machine's own timeout is only a backstop above it.
MAX_RUN_SECONDS = int(MAX_TRAINING_TIMEOUT_HOURS * 3600 + 4 * MAX_WAIT_TIMEOUT_MINUTES * 60 + 3600)


@dataclass(frozen=True)
class HistoryBudget:
    """Upper bounds of the history events one execution writes: the path without loops, and
    one iteration of each polling loop, retries included. The numbers are the workflow's;
    tests/infrastructure/test_workflow_contract.py recounts them from the synthesized definition."""

    fixed: int
    deletion: int
    dataset: int
    training: int
    model: int


WORKFLOW_HISTORY = HistoryBudget(fixed=630, deletion=20, dataset=22, training=22, model=22)


# The share of pair ids held out for the test manifest. Custom Labels trains a model on the
# project's training AND test datasets ("training uses the training and test datasets
# associated with the project", CreateProjectVersion,
# https://docs.aws.amazon.com/rekognition/latest/APIReference/API_CreateProjectVersion.html), so
# a training run always holds some out, and never more than half.
TEST_FRACTION_MIN, TEST_FRACTION_MAX = 0.01, 0.5
# ``convert`` alone may hold none out (a train manifest only): the test dataset is then made
# on AWS by splitting the training one (DistributeDatasetEntries moves 20% of its images,
# https://docs.aws.amazon.com/rekognition/latest/APIReference/API_DistributeDatasetEntries.html),
# by image rather than by pair id.
NO_TEST_SET = 0.0


def test_fraction_problem(value: float, *, none_held_out: bool = False) -> str | None:
    """Why ``value`` is no test fraction, else None: from TEST_FRACTION_MIN to TEST_FRACTION_MAX,
    or NO_TEST_SET where ``none_held_out`` allows it (``convert``)."""
    if none_held_out and value == NO_TEST_SET:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or not TEST_FRACTION_MIN <= value <= TEST_FRACTION_MAX:
        also = f" (or {NO_TEST_SET:g} for no test manifest)" if none_held_out else ""
        return f"must be a number from {TEST_FRACTION_MIN} to {TEST_FRACTION_MAX}{also}, got {value!r}"
    return None


class OptionsError(ValueError):
    """A training request that cannot be run; the message names the bad option, ``option`` too."""

    def __init__(self, message: str, option: str | None = None) -> None:
        super().__init__(message)
        self.option = option


@dataclass(frozen=True)
class TrainingOptions:
    test_fraction: float = 0.2
    label_mapping: dict[str, str | None] = field(default_factory=lambda: dict(DEFAULT_MAPPING))
    min_f1: float = 0.0
    inference_units: int = 1
    deploy: bool = True
    seed: int = 0
    poll_seconds: int = 600  # training takes hours; Describe calls are cheap but not free
    start_poll_seconds: int = 60  # datasets being deleted or created, a model starting
    training_timeout_hours: float = 72.0
    # Each wait before and after training (old datasets deleted, each new dataset created and
    # checked image by image, the model started) gives up after this long.
    wait_timeout_minutes: float = 120.0
    keep_previous_model_running: bool = False  # a new model replaces the dataset's running one

    @classmethod
    def parse(cls, data: dict[str, Any] | None, defaults: dict[str, Any] | None = None) -> "TrainingOptions":
        """Validate user options (snake_case keys) over deployment defaults."""
        merged = {**(defaults or {}), **(data or {})}
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(merged) - known)
        if unknown:
            raise OptionsError(f"unknown option(s) {unknown}; known: {sorted(known)}")
        try:
            options = cls(**merged)
        except TypeError as exc:
            raise OptionsError(str(exc)) from None
        options._check()
        return options

    def _check(self) -> None:
        def number(name: str, low: float, high: float, integer: bool = False) -> None:
            value = getattr(self, name)
            kind = int if integer else (int, float)
            if isinstance(value, bool) or not isinstance(value, kind) or not (low <= value <= high) or (isinstance(value, float) and math.isnan(value)):
                raise OptionsError(f"option {name} must be {'an integer' if integer else 'a number'} from {low} to {high}, got {value!r}", name)

        number("test_fraction", TEST_FRACTION_MIN, TEST_FRACTION_MAX)
        number("min_f1", 0.0, 1.0)
        number("inference_units", 1, 100, integer=True)
        number("seed", 0, 2**31, integer=True)
        number("poll_seconds", 0, 3600, integer=True)
        number("start_poll_seconds", 0, 3600, integer=True)
        number("training_timeout_hours", 0.01, MAX_TRAINING_TIMEOUT_HOURS)
        number("wait_timeout_minutes", 1, MAX_WAIT_TIMEOUT_MINUTES)
        for flag in ("deploy", "keep_previous_model_running"):
            if not isinstance(getattr(self, flag), bool):
                raise OptionsError(f"option {flag} must be true or false, got {getattr(self, flag)!r}", flag)
        self._check_history()
        if not isinstance(self.label_mapping, dict):
            raise OptionsError("option label_mapping must be an object of category -> label (or null)", "label_mapping")
        try:
            self.catalogue()
        except LabelMappingError as exc:
            raise OptionsError(f"option label_mapping: {exc}", "label_mapping") from None

    def catalogue(self) -> LabelCatalogue:
        return LabelCatalogue(mapping=self.label_mapping)

    def _loops(self) -> list[tuple[str, int, int]]:
        """Each polling loop a run goes through once: (its HistoryBudget field, how many times
        it polls before it gives up, seconds between polls). A poll period of 0 (tests, the
        emulator) counts as 1 s: the bound is a number of polls. The two datasets wait in turn."""
        def polls(seconds: float, period: int) -> int:
            return max(1, math.ceil(seconds / max(period, 1)))

        start, wait = max(self.start_poll_seconds, 1), polls(self.wait_timeout_minutes * 60, self.start_poll_seconds)
        training = polls(self.training_timeout_hours * 3600, self.poll_seconds)
        return [("deletion", wait, start), ("dataset", wait, start), ("dataset", wait, start),
                ("training", training, max(self.poll_seconds, 1)), ("model", wait, start)]

    @property
    def limits(self) -> dict[str, int]:
        """How many times each loop of the workflow polls before it gives up (``<loop>_polls``)."""
        return {f"{field}_polls": count for field, count, _ in self._loops()}

    def history_events(self, budget: HistoryBudget = WORKFLOW_HISTORY) -> int:
        """The most history events a run with these options can write."""
        return budget.fixed + sum(count * getattr(budget, field) for field, count, _ in self._loops())

    @property
    def max_run_seconds(self) -> int:
        """The longest a run can take: every wait at its bound (what the dataset lease must cover)."""
        return sum(count * period for _, count, period in self._loops())

    def _check_history(self, budget: HistoryBudget = WORKFLOW_HISTORY) -> None:
        events = self.history_events(budget)
        if events <= HISTORY_EVENT_LIMIT:
            return
        others = events - self.limits["training_polls"] * budget.training  # what the training loop does not write
        room = (HISTORY_EVENT_LIMIT - others) // budget.training
        if room < 1:
            raise OptionsError(
                f"option start_poll_seconds {self.start_poll_seconds} is too short for wait_timeout_minutes "
                f"{self.wait_timeout_minutes:g}: the waits for datasets and the model alone could write {others} of the "
                f"{HISTORY_EVENT_LIMIT} history events an execution holds", "start_poll_seconds")
        shortest = math.ceil(self.training_timeout_hours * 3600 / room)
        raise OptionsError(
            f"option poll_seconds {self.poll_seconds} is too short for training_timeout_hours {self.training_timeout_hours:g}: "
            f"an execution holds {HISTORY_EVENT_LIMIT} history events, which leaves room for {room} training polls, "
            f"so poll_seconds must be at least {shortest}", "poll_seconds")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_dataset_name(dataset: Any) -> str:
    if not isinstance(dataset, str) or not DATASET_NAME.match(dataset):
        raise OptionsError(f"dataset name {dataset!r} must be 1-64 letters, digits, '.', '_' or '-'")
    return dataset


def run_suffix(execution_name: str) -> str:
    """How a run's id ends: the last 8 letters and digits of its execution's name, so that a
    run folder is found from its execution (``fashion-pipeline runs``) before the run ends."""
    return re.sub(r"[^A-Za-z0-9]", "", execution_name)[-8:] or "run"


def run_names(dataset: str, now: dt.datetime, execution_name: str) -> dict[str, str]:
    """Names of one training run: unique per execution, readable, valid for Rekognition."""
    run_id = f"{now.strftime('%Y%m%dT%H%M%SZ')}-{run_suffix(execution_name)}"
    return {
        "run_id": run_id,
        "project_name": project_name(dataset),
        "version_name": f"{dataset}-{run_id}"[:255],
        "prefix": f"{RUNS_PREFIX}{dataset}/{run_id}/",
    }


def run_id_of(dataset: str, version_name: str) -> str | None:
    """The run that trained a model version, from the version's name (``run_names``' rule:
    ``<dataset>-<run-id>``); None for a version named any other way (made outside the pipeline)."""
    head = f"{dataset}-"
    run_id = version_name[len(head):] if version_name.startswith(head) else ""
    return run_id if re.fullmatch(r"\d{8}T\d{6}Z-[A-Za-z0-9]{1,8}", run_id) else None


def evaluation_report(summary_file: dict[str, Any], *, f1_score: float | None, min_f1: float, deploy: bool) -> dict[str, Any]:
    """The evaluation report written next to the manifests, and the deploy decision.

    ``summary_file`` is Rekognition's EvaluationSummary JSON. Its aggregate metrics appear
    both flat and under ``Metrics`` in AWS's documentation, so both are read.
    """
    aggregated = summary_file.get("AggregatedEvaluationResults") or {}
    aggregated = aggregated.get("Metrics", aggregated)
    details = summary_file.get("EvaluationDetails") or {}
    overall_f1 = f1_score if f1_score is not None else aggregated.get("F1Score")
    labels = []
    for entry in summary_file.get("LabelEvaluationResults") or []:
        metrics = entry.get("Metrics") or {}
        labels.append({
            "label": entry.get("Label"),
            "precision": metrics.get("Precision"),
            "recall": metrics.get("Recall"),
            "f1": metrics.get("F1Score"),
            "threshold": metrics.get("Threshold"),
            "test_images": entry.get("NumberOfTestingImages"),
        })
    if not deploy:
        decision, reason = False, "deployment is switched off for this run"
    elif overall_f1 is None:
        decision, reason = False, "Rekognition reported no F1 score"
    elif overall_f1 < min_f1:
        decision, reason = False, f"F1 {overall_f1:.3f} is below the minimum {min_f1:.3f}"
    else:
        decision, reason = True, f"F1 {overall_f1:.3f} reaches the minimum {min_f1:.3f}"
    return {
        "overall": {"f1": overall_f1, "precision": aggregated.get("Precision"), "recall": aggregated.get("Recall")},
        "labels": sorted(labels, key=lambda l: str(l["label"])),
        "training_images": details.get("NumberOfTrainingImages"),
        "test_images": details.get("NumberOfTestingImages"),
        "evaluated_at": details.get("EvaluationEndTimestamp"),
        "deploy": decision,
        "reason": reason,
    }
