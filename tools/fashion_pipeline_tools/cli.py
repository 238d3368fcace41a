"""The ``fashion-pipeline`` command line.

Exit status, for every command (``main`` is the one place errors become lines on stderr):

* 0 -- done.
* 1 -- a failure outside the input: the API or AWS refused or could not be reached, a run
  failed, a file could not be written for another reason than its path (e.g. a full disk),
  or an unexpected error (one line; ``--debug`` shows the traceback).
* 2 -- bad arguments or input, including an output path that cannot be created or written
  and missing AWS credentials, region or profile (argparse's usage errors are 2 as well).
* 3 -- ``convert`` wrote the manifests, but Rekognition Custom Labels would refuse them.
* 130 -- interrupted (Ctrl-C).
* 141 -- stdout was closed early (``fashion-pipeline convert ... | head``): nothing is printed.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence, TextIO

from fashion_pipeline.labels import DEFAULT_MAPPING, LabelCatalogue, LabelMappingError
from fashion_pipeline.manifest import ManifestAssembler, manifest_problems, write_report
from fashion_pipeline.pipeline import convert_into
from fashion_pipeline.sources import InputError, LocalImages, load_labels, open_source
from fashion_pipeline.training import NO_TEST_SET, TEST_FRACTION_MAX, TEST_FRACTION_MIN, test_fraction_problem

from .api_commands import CommandError, register as register_api_commands
from .batch_commands import register as register_batch_commands
from .aws.stack import DEFAULT_STACK, StackNotFound


class Progress:
    """A one-line progress bar on a terminal; silent when stderr is not one."""

    def __init__(self, total: int, stream: TextIO = sys.stderr, label: str = "converting") -> None:
        self.total = max(total, 1)
        self.stream = stream
        self.label = label
        self.enabled = stream.isatty()
        self.done = 0
        self._last = 0.0
        self._start = time.monotonic()

    def advance(self, count: int = 1) -> None:
        self.done += count
        now = time.monotonic()
        if self.enabled and (now - self._last > 0.1 or self.done >= self.total):
            self._last = now
            width = 30
            filled = int(width * min(self.done, self.total) / self.total)
            rate = self.done / max(now - self._start, 1e-9)
            self.stream.write(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} {rate:,.0f}/s")
            self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


EXIT_OK = 0
EXIT_FAILURE = 1  # the API, AWS or a run failed; or an unexpected error
EXIT_USAGE = 2  # bad arguments or input (argparse uses 2 too)
EXIT_REFUSED = 3  # convert wrote the manifests, but Rekognition would refuse them (summary["problems"])
EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a writer whose reader went away

# An OSError with one of these is about the path the user gave: a usage error, not a failure.
_PATH_ERRNOS = {errno.EACCES, errno.EPERM, errno.ENOENT, errno.EROFS, errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.ENAMETOOLONG}


def convert(args: argparse.Namespace) -> dict[str, Any]:
    source = open_source(args.annotations)
    if source.annotation_files == 0:  # a folder or .zip: nothing to convert is a mistake, not an empty result
        where = "folder or its subfolders" if source.kind == "folder" else "archive"
        raise InputError(f"{args.annotations}: no .json annotation file in this {where} ({source.total} other files)")
    images = LocalImages(args.images, args.image_uri)
    if args.labels:
        mapping = load_labels(args.labels)
    else:
        mapping = dict(DEFAULT_MAPPING) if source.categories is None else {}
    categories = source.categories
    try:
        catalogue = LabelCatalogue(mapping=mapping, **({"categories": categories} if categories else {}))
    except LabelMappingError as exc:  # the labels come from the mapping, else from the annotations' categories
        raise InputError(f"{args.labels or args.annotations}: {exc}") from None
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"--out {out}: cannot create the folder: {exc.strerror or exc}") from None
    if args.test_fraction == NO_TEST_SET:
        print(f"fashion-pipeline: warning: --test-fraction {NO_TEST_SET:g}: the test manifest will be empty; Custom Labels"
              " trains only with a test dataset: split the training dataset on AWS (DistributeDatasetEntries) or convert"
              f" with a fraction from {TEST_FRACTION_MIN} to {TEST_FRACTION_MAX}", file=sys.stderr, flush=True)
    progress = Progress(source.total)
    started = time.monotonic()
    with ManifestAssembler(catalogue, test_fraction=args.test_fraction, seed=args.seed, workdir=str(out)) as assembler:

        convert_into(assembler, source, images, jobs=getattr(args, "jobs", None), on_images=progress.advance)
        progress.close()
        # Write beside the final names and rename, so a crash never leaves half a manifest.
        with open(out / "train.manifest.part", "wb") as train, open(out / "test.manifest.part", "wb") as test:
            summary = assembler.finish(train, test)
        summary = {"input": {"annotations": str(args.annotations), "kind": source.kind, "images": str(args.images), "image_uri": images.image_uri}, **summary}
        summary["seconds"] = round(time.monotonic() - started, 3)
        summary["problems"] = manifest_problems(summary, region=args.region)
        with open(out / "report.json.part", "w", encoding="utf-8") as report:
            write_report(report, summary, assembler.iter_rejections())
    for name in ("train.manifest", "test.manifest", "report.json"):
        os.replace(out / f"{name}.part", out / name)
    return summary


def summary_table(summary: dict[str, Any]) -> str:
    train, test = summary["train"], summary["test"]
    rows = [
        f"annotations in   {summary['annotations_in']:>8}",
        f"lines out        {summary['lines_out']:>8}   (train {train['images']}, test {test['images']}, test fraction {summary['test_fraction']['actual']:.3f})",
        "",
        f"{'label':<24}{'train boxes':>12}{'test boxes':>12}",
    ]
    for label in sorted(set(train["boxes"]) | set(test["boxes"]) | set(summary["class_map"].values())):
        rows.append(f"{label:<24}{train['boxes'].get(label, 0):>12}{test['boxes'].get(label, 0):>12}")
    rejections = summary["rejections"]
    rows += ["", f"rejected: {rejections['images']} images, {rejections['boxes']} boxes"]
    for reason, count in rejections["by_reason"].items():
        rows.append(f"  {reason:<28}{count:>8}")
    for side, note in summary.get("downsampled", {}).items():
        rows.append(f"{side} down-sampled from {note['from']} to {note['to']} lines ({note['stratified_by']})")
    if summary["problems"]:
        rows += ["", "WARNING: Rekognition Custom Labels would refuse these manifests:"]
        rows += [f"  ! {problem}" for problem in summary["problems"]]
    return "\n".join(rows)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be a whole number of at least 1")
    return value


def _fraction(text: str) -> float:
    """``convert --test-fraction``: the training rule (``test_fraction_problem``), or 0 for none."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    problem = test_fraction_problem(value, none_held_out=True)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return value


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, unless it is None/False or its help already says it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default is None or action.default is False or action.default == argparse.SUPPRESS or "default" in text:
            return text
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose subcommands (``add_subparsers`` makes them of this class) show defaults."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def package_version() -> str:
    """The installed distribution's version, else the checkout's pyproject.toml's."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fashion-pipeline")
    except PackageNotFoundError:
        pass
    try:
        import tomllib

        pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
        return str(tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["version"])
    except (OSError, KeyError, ValueError):
        return "unknown"


EXIT_STATUS_HELP = (
    f"exit status: {EXIT_OK} done; {EXIT_FAILURE} failure (AWS, the API or a run failed; an unexpected error);"
    f" {EXIT_USAGE} bad arguments or input (also an output path that cannot be written, missing AWS credentials"
    f" or region); {EXIT_REFUSED} convert wrote manifests Rekognition would refuse; {EXIT_INTERRUPTED} interrupted;"
    f" {EXIT_BROKEN_PIPE} stdout closed early (| head)"
)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="fashion-pipeline", description="DeepFashion2/COCO to Amazon Rekognition Custom Labels.",
                    epilog=EXIT_STATUS_HELP)
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    parser.add_argument("--debug", action="store_true", help="on an unexpected error, show the Python traceback")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    c = commands.add_parser(
        "convert", help="convert annotations into train/test manifests and a report",
        epilog=f"exit status: {EXIT_OK} manifests written; {EXIT_USAGE} bad arguments or input (also an --out that cannot be"
        f" created or written); {EXIT_REFUSED} manifests written, but Rekognition Custom Labels would refuse them (the summary"
        f" ends with the problems, also in report.json); {EXIT_FAILURE} an unexpected error; {EXIT_INTERRUPTED} interrupted;"
        f" {EXIT_BROKEN_PIPE} stdout closed early (| head)",
    )
    c.add_argument("annotations", help="a folder or .zip of DeepFashion2 JSON files, a COCO .json, or a .jsonl file")
    c.add_argument("--images", required=True, help="folder holding the images")
    c.add_argument("--image-uri", required=True, help="s3://BUCKET/PREFIX/ where the images are (or will be) uploaded")
    c.add_argument("--out", required=True, help="output folder for train.manifest, test.manifest and report.json")
    c.add_argument("--test-fraction", type=_fraction, default=0.2,
                   help=f"share of pair ids held out for the test manifest, {TEST_FRACTION_MIN} to {TEST_FRACTION_MAX} as for"
                   f" train; {NO_TEST_SET:g} writes an empty test manifest (a warning says so): Custom Labels trains only with a"
                   " test dataset, which you then make on AWS by splitting the training one (DistributeDatasetEntries)")
    c.add_argument("--labels", help="JSON object mapping category names to labels (null excludes a category)")
    c.add_argument("--seed", type=int, default=0, help="changes which pair ids go to test")
    c.add_argument("--jobs", type=_positive, help="worker processes reading and probing (default: the number of CPUs)")
    c.add_argument("--json", action="store_true", help="print the summary as JSON instead of a table")
    c.add_argument(
        "--region", default=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"),
        help="AWS region to check the image caps of: eu-west-2 and ap-south-1 take fewer images (default: $AWS_REGION,"
        " else $AWS_DEFAULT_REGION, else none: the caps of most regions)",
    )

    r = commands.add_parser("reprocess", help="re-run conversion of every annotation object of a dataset")
    r.add_argument("--dataset", required=True, help="the dataset whose objects under annotations/DATASET/ are converted again")
    r.add_argument("--interval", type=float, default=5.0, help="how often to check the execution (seconds)")
    _stack_arguments(r)

    t = commands.add_parser("train", help="start a training run for a dataset (and optionally wait for it)")
    t.add_argument("--dataset", required=True, help="the dataset to train on: the fragments converted from annotations/DATASET/ and its images under images/DATASET/")
    t.add_argument("--wait", action="store_true", help="follow the run until it ends; exit 1 if it fails")
    t.add_argument("--test-fraction", type=float,
                   help=f"share of pair ids the run holds out for testing, {TEST_FRACTION_MIN} to {TEST_FRACTION_MAX} (default 0.2)")
    t.add_argument("--labels", help="JSON file mapping category names to labels (null excludes)")
    t.add_argument("--min-f1", type=float, help="deploy only if the test F1 reaches this, 0 to 1 (default 0: deploy whatever it scores)")
    t.add_argument("--inference-units", type=int, help="inference units the deployed model runs on, each billed by the hour (default 1)")
    t.add_argument("--no-deploy", action="store_true", help="train and evaluate only")
    t.add_argument("--seed", type=int, help="changes which pair ids the run holds out for testing (default 0)")
    t.add_argument("--poll-seconds", type=int, help="how often the workflow checks training (default 600)")
    t.add_argument("--start-poll-seconds", type=int, help="how often it checks datasets and deployment (default 60)")
    t.add_argument("--training-timeout-hours", type=float, help="fail the run if training has not finished after this long (default 72)")
    t.add_argument("--wait-timeout-minutes", type=float,
                   help="fail the run if old datasets are not deleted, a new one not created, or the model not started after this long, each (default 120)")
    t.add_argument("--keep-previous-model-running", action="store_true",
                   help="leave the dataset's running model running when the new one is deployed (each bills by the hour)")
    t.add_argument("--interval", type=float, default=30.0, help="how often --wait checks the run (seconds)")
    _stack_arguments(t)

    runs = commands.add_parser("runs", help="list training runs: status, start, duration, manifest counts, F1, why it ended")
    runs.add_argument("--dataset", help="only this dataset's runs (default: every dataset's)")
    runs.add_argument("--limit", type=_positive, default=50, help="how many of the newest runs to show")
    runs.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _stack_arguments(runs)

    models = commands.add_parser("models", help="list model versions: status, F1, created, which one the API serves, hourly cost")
    models.add_argument("--dataset", help="only this dataset's models (default: every dataset's)")
    models.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _stack_arguments(models)

    d = commands.add_parser("deploy", help="make a model version a dataset's live model (promote or roll back): start it, wait until"
                            " RUNNING, move the dataset's pointer, stop the previous model")
    d.add_argument("--dataset", required=True, help="the dataset whose live model changes")
    d.add_argument("--version", required=True, help="the model version to serve (the VERSION column of `models`)")
    d.add_argument("--wait", action="store_true", help="wait until a starting version is RUNNING and finish (default: start it and"
                   " say so; the same command run again finishes once it runs)")
    d.add_argument("--inference-units", type=_positive, help="inference units to start it on (default: the version's own, else the"
                   " previous live model's, else 1)")
    d.add_argument("--keep-previous", action="store_true", help="leave the previous live model running (it keeps billing)")
    d.add_argument("--interval", type=float, default=10.0, help="how often --wait checks the version (seconds)")
    d.add_argument("--timeout-minutes", type=float, default=60.0, help="how long --wait waits for RUNNING")
    d.add_argument("--json", action="store_true", help="print the outcome as JSON (progress goes to stderr)")
    _stack_arguments(d)

    report = commands.add_parser("report", help="write a model version's evaluation report (charts, per-label metrics, test gallery) to a folder")
    report.add_argument("--dataset", required=True, help="the dataset whose model is reported")
    report.add_argument("--version", help="the model version (the VERSION column of `models`; default: the newest evaluated one)")
    report.add_argument("--out", required=True, help="folder to write index.html, charts/ and the gallery into")
    report.add_argument("--compare", metavar="VERSION", help="also write compare.html: per-label differences from this version")
    report.add_argument("--no-images", action="store_true", help="leave the test images out of the gallery (no image reads)")
    _stack_arguments(report)

    register_api_commands(commands)
    register_batch_commands(commands)

    local = commands.add_parser("local", help="run the whole pipeline offline (local mode)")
    local_commands = local.add_subparsers(dest="local_command", required=True)
    up = local_commands.add_parser("up", help="start the emulated AWS, the event plumbing and the inference API")
    up.add_argument("--port", type=int, default=4566, help="the emulated AWS endpoint's port")
    up.add_argument("--api-port", type=int, default=8000, help="the inference API's (and web page's) port")
    up.add_argument("--template", help="a synthesized template to use instead of synthesizing this checkout")
    up.add_argument("--verbose", action="store_true",
                    help="write the functions' log records and EMF metric records to stderr, each under its function's"
                    " service name (default: off, they are discarded; stdout carries only the line of endpoints)")

    s = commands.add_parser("sample", help="generate a DeepFashion2-format sample dataset")
    s.add_argument("out", help="folder to create the sample in (annos/ and image/ beneath it)")
    s.add_argument("--images", type=_positive, default=40, help="how many images and annotation files to generate")
    s.add_argument("--seed", type=int, default=7, help="changes the generated garments")
    s.add_argument("--defects", action="store_true", help="add one input for each rejection reason")
    _add_debug_everywhere(parser)
    return parser


def _add_debug_everywhere(parser: argparse.ArgumentParser) -> None:
    """``--debug`` also after the subcommand (``fashion-pipeline convert ... --debug``)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in set(action.choices.values()):
                if "--debug" not in sub._option_string_actions:
                    sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                                     help="on an unexpected error, show the Python traceback")
                _add_debug_everywhere(sub)


def _stack_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stack", default=DEFAULT_STACK, help="the deployed stack whose outputs name the resources")
    parser.add_argument("--region", help="AWS region (default: your AWS configuration)")


def _session(args: argparse.Namespace) -> Any:
    import boto3  # only the commands that talk to AWS need the SDK

    return boto3.Session(region_name=args.region) if args.region else boto3.Session()


def reprocess(args: argparse.Namespace, session: Any = None) -> int:
    """Start the stack's Reprocess state machine and follow it: progress on stderr, totals on stdout."""
    from .aws.reprocess import NothingToReprocess, ReprocessFailed, follow_reprocess, start_reprocess
    from .aws.stack import stack_outputs
    from fashion_pipeline.training import OptionsError, check_dataset_name

    try:
        check_dataset_name(args.dataset)
    except OptionsError as exc:
        raise InputError(f"--dataset: {exc}") from None
    session = session or _session(args)
    outputs = stack_outputs(session, args.stack)
    if "ReprocessStateMachineArn" not in outputs:
        raise StackNotFound(f"stack {args.stack!r} has no ReprocessStateMachineArn output: deploy this version of the stack")
    sfn = session.client("stepfunctions")
    arn = start_reprocess(sfn, outputs["ReprocessStateMachineArn"], dataset=args.dataset)
    print(f"started {arn}", file=sys.stderr, flush=True)

    def progress(counts: dict[str, int]) -> None:
        # The Map Run's item counts (on AWS the objects listed; moto counts its batches).
        print(f"  re-enqueued {counts.get('succeeded', 0)}/{counts.get('total', 0)} (Map Run items)"
              + (f", {counts['failed']} failed" if counts.get("failed") else ""), file=sys.stderr, flush=True)

    try:
        result = follow_reprocess(sfn, arn, interval=args.interval, on_progress=progress)
    except NothingToReprocess as exc:
        print(f"fashion-pipeline: error: {exc}", file=sys.stderr)
        return 1
    except ReprocessFailed as exc:
        print(f"fashion-pipeline: reprocess {exc}", file=sys.stderr)
        return 1
    print(f"re-enqueued {result['objects']} annotation objects of dataset {result['dataset']!r} in {result['batches']} batches")
    return 0


def train(args: argparse.Namespace) -> int:
    from .aws.stack import stack_outputs
    from .aws.training_runs import follow, start_training
    from fashion_pipeline.training import OptionsError, TrainingOptions, check_dataset_name

    try:
        check_dataset_name(args.dataset)  # the rule the workflow applies, before anything starts
    except OptionsError as exc:
        raise InputError(f"--dataset: {exc}") from None
    options: dict[str, Any] = {
        key: value
        for key, value in {
            "test_fraction": args.test_fraction, "min_f1": args.min_f1, "inference_units": args.inference_units,
            "seed": args.seed, "poll_seconds": args.poll_seconds, "start_poll_seconds": args.start_poll_seconds,
            "training_timeout_hours": args.training_timeout_hours, "wait_timeout_minutes": args.wait_timeout_minutes,
            "keep_previous_model_running": True if args.keep_previous_model_running else None,
        }.items()
        if value is not None
    }
    if args.labels:
        options["label_mapping"] = load_labels(args.labels)
    if args.no_deploy:
        options["deploy"] = False
    try:
        TrainingOptions.parse(options)  # the workflow checks again; this fails before anything starts
    except OptionsError as exc:
        raise InputError(str(exc)) from None
    session = _session(args)
    outputs = stack_outputs(session, args.stack)
    if "StateMachineArn" not in outputs:
        raise StackNotFound(f"stack {args.stack!r} has no StateMachineArn output: deploy the pipeline's stack, or pass --stack")
    sfn = session.client("stepfunctions")
    arn = start_training(sfn, outputs["StateMachineArn"], dataset=args.dataset, options=options)
    region = session.region_name or "us-east-1"
    print(f"started {arn}")
    print(f"watch it: https://{region}.console.aws.amazon.com/states/home?region={region}#/v2/executions/details/{arn}")
    if not args.wait:
        return 0
    described = follow(sfn, arn, interval=args.interval, on_state=lambda name: print(f"  -> {name}", flush=True))
    if described["status"] == "SUCCEEDED":
        result = json.loads(described.get("output") or "{}")
        print(f"{result.get('status', 'succeeded')}: {result.get('reason', '')} (model {result.get('model_arn') or result.get('project_version')})")
        return 0
    print(f"run {described['status'].lower()}: {described.get('error', '')} {described.get('cause', '')}", file=sys.stderr)
    return 1


def _outputs(args: argparse.Namespace, session: Any, *names: str) -> dict[str, str]:
    from .aws.stack import stack_outputs

    outputs = stack_outputs(session, args.stack)
    missing = [name for name in names if name not in outputs]
    if missing:
        raise StackNotFound(f"stack {args.stack!r} has no {', '.join(missing)} output: deploy this version of the stack, or pass --stack")
    return outputs


def _dataset_filter(args: argparse.Namespace) -> str | None:
    from fashion_pipeline.training import OptionsError, check_dataset_name

    if args.dataset is None:
        return None
    try:
        return check_dataset_name(args.dataset)
    except OptionsError as exc:
        raise InputError(f"--dataset: {exc}") from None


def _of(dataset: str | None) -> str:
    return f" of dataset {dataset!r}" if dataset else ""


def _listing(args: argparse.Namespace, rows: list[dict[str, Any]], as_table: Any, empty: str) -> int:
    print(json.dumps(rows, indent=2) if args.json else (as_table(rows) if rows else empty))
    return 0


def runs(args: argparse.Namespace) -> int:
    from .aws.fleet import list_runs, runs_table

    dataset = _dataset_filter(args)
    session = _session(args)
    outputs = _outputs(args, session, "StateMachineArn", "ArtifactsBucketName")
    found = list_runs(session.client("stepfunctions"), session.client("s3"), state_machine_arn=outputs["StateMachineArn"],
                      artifacts_bucket=outputs["ArtifactsBucketName"], dataset=dataset, limit=args.limit)  # fmt: skip
    return _listing(args, found, runs_table, f"no training runs{_of(dataset)} (start one: fashion-pipeline train --dataset NAME)")


def models(args: argparse.Namespace) -> int:
    from .aws.fleet import list_models, live_models, models_table

    dataset = _dataset_filter(args)
    session = _session(args)
    outputs = _outputs(args, session, "ModelParameterPrefix")
    live = live_models(session.client("ssm"), outputs["ModelParameterPrefix"])
    found = list_models(session.client("rekognition"), live=live, dataset=dataset)
    return _listing(args, found, models_table, f"no models{_of(dataset)} (a training run creates one)")


def deploy(args: argparse.Namespace) -> int:
    from .aws.deploy import DeployFailed, deploy as promote
    from .aws.fleet import VersionNotFound

    from fashion_pipeline.lifecycle import PointerError, PromotionRefused

    dataset = _dataset_filter(args)
    session = _session(args)
    outputs = _outputs(args, session, "ModelParameterPrefix")
    try:
        done = promote(session.client("rekognition"), session.client("ssm"), prefix=outputs["ModelParameterPrefix"], dataset=dataset,
                       version=args.version, inference_units=args.inference_units, wait=args.wait, keep_previous=args.keep_previous,
                       interval=args.interval, timeout=args.timeout_minutes * 60,
                       say=lambda line: print(line, file=sys.stderr if args.json else sys.stdout, flush=True))  # fmt: skip
    except (VersionNotFound, PromotionRefused, DeployFailed, PointerError) as exc:
        print(f"fashion-pipeline: error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(done.to_dict(), indent=2))
    elif done.moved:
        print(f"the API answers for {dataset!r} with {done.version} within 15 seconds (each API container re-reads the pointers"
              " every POINTER_TTL_SECONDS)")
    return 0


def report(args: argparse.Namespace) -> int:
    from .aws.fleet import describe_version, s3_opener

    from evaluation_report.build import build_report
    from fashion_pipeline.evaluation import EvaluationError

    dataset = _dataset_filter(args)
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"--out {args.out}: {exc.strerror or exc}") from None
    session = _session(args)
    rekognition = session.client("rekognition")
    try:
        described = describe_version(rekognition, dataset, args.version)
        other = describe_version(rekognition, dataset, args.compare) if args.compare else None
        evaluation, files = build_report(described, s3_opener(session.client("s3")), out, compare_with=other,
                                         with_images=not args.no_images)  # fmt: skip
    # VersionNotFound; a summary or manifest the description names that is gone (LookupError);
    # one that does not parse (EvaluationError, naming the file and line).
    except (LookupError, EvaluationError) as exc:
        print(f"fashion-pipeline: error: {exc}", file=sys.stderr)
        return 1
    f1 = evaluation.overall.f1
    print(f"{files[0]}  ({len(files)} files; {evaluation.version}: F1 {'-' if f1 is None else f'{f1:.3f}'}, "
          f"{len(evaluation.labels)} labels, {len(evaluation.images)} test images)")
    return 0


LOCAL_STATE_NOTE = ("local mode: everything (buckets, queues, tables, runs, models) lives in this process's memory"
                    " and is lost when it stops")


def local_up(args: argparse.Namespace) -> int:
    import signal
    import threading

    from .local.server import start

    pipeline = start(port=args.port, api_port=args.api_port, template_path=args.template, verbose=args.verbose)
    print(json.dumps(pipeline.info()), flush=True)
    print(f"export AWS_ENDPOINT_URL={pipeline.endpoint}  # then use aws/boto3/fashion-pipeline as against AWS; Ctrl-C stops",
          file=sys.stderr, flush=True)
    print(LOCAL_STATE_NOTE, file=sys.stderr, flush=True)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        stopped.wait()
    except KeyboardInterrupt:
        pass
    finally:
        pipeline.shutdown()
    return 0


def _run(args: argparse.Namespace) -> int:
    if args.command == "convert":
        summary = convert(args)
        print(json.dumps(summary, indent=2) if args.json else summary_table(summary))
        if summary["problems"]:
            return EXIT_REFUSED
    elif args.command == "sample":
        from .sample import generate

        sample = generate(args.out, images=args.images, seed=args.seed, defects=args.defects)
        print(f"wrote {len(sample.files)} annotation files to {sample.annotations} and images to {sample.images}")
    elif args.command == "reprocess":
        return reprocess(args)
    elif args.command == "train":
        return train(args)
    elif args.command == "runs":
        return runs(args)
    elif args.command == "models":
        return models(args)
    elif args.command == "deploy":
        return deploy(args)
    elif args.command == "report":
        return report(args)
    elif args.command == "local":
        return local_up(args)
    elif hasattr(args, "func"):  # detect, ui
        return int(args.func(args))
    return EXIT_OK


def _error(message: str) -> None:
    try:
        print(f"fashion-pipeline: error: {message}", file=sys.stderr, flush=True)
    except (OSError, ValueError):  # stderr itself is gone: nothing left to tell
        pass


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so the interpreter's final flush cannot fail
    (https://docs.python.org/3/library/signal.html#note-on-sigpipe)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (AttributeError, OSError, ValueError):  # a stand-in stdout (tests) has no descriptor
        pass


def _aws_error(exc: Exception) -> tuple[int, str] | None:
    """The exit status and line for botocore's errors; None for anything else."""
    try:
        from botocore import exceptions as boto
    except ImportError:  # pragma: no cover - the SDK is installed with the CLI's AWS commands
        return None
    if isinstance(exc, boto.NoCredentialsError):
        return EXIT_USAGE, ("no AWS credentials found: run `aws configure` or `aws sso login`, set AWS_PROFILE, or set"
                            " AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    if isinstance(exc, (boto.PartialCredentialsError, boto.ProfileNotFound)):
        return EXIT_USAGE, f"AWS configuration: {exc}"
    if isinstance(exc, boto.NoRegionError):
        return EXIT_USAGE, "no AWS region: pass --region, or set AWS_DEFAULT_REGION or a region in your AWS profile"
    if isinstance(exc, boto.EndpointConnectionError):
        return EXIT_FAILURE, f"cannot reach AWS: {exc} (check the network, the region, or AWS_ENDPOINT_URL)"
    if isinstance(exc, boto.ClientError):
        error = exc.response.get("Error", {})
        operation = getattr(exc, "operation_name", "") or "the request"
        return EXIT_FAILURE, f"AWS refused {operation}: {error.get('Code', '?')}: {error.get('Message', exc)}"
    if isinstance(exc, boto.BotoCoreError):
        return EXIT_FAILURE, f"AWS SDK: {exc}"
    return None


def _os_error(exc: OSError) -> tuple[int, str]:
    where = exc.filename if exc.filename is not None else None
    reason = exc.strerror or str(exc) or type(exc).__name__
    line = f"{where}: {reason}" if where is not None else reason
    return (EXIT_USAGE if exc.errno in _PATH_ERRNOS else EXIT_FAILURE), line


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; every error ends here as one line on stderr and an exit status (see the module's docstring)."""
    args = build_parser().parse_args(argv)
    debug = getattr(args, "debug", False)
    try:
        code = _run(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the boundary, not at interpreter exit
        return code
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        _error("interrupted")
        return EXIT_INTERRUPTED
    except Exception as exc:  # the boundary: one line per error, a traceback only with --debug
        if isinstance(exc, (InputError, StackNotFound, CommandError)):
            code, line = EXIT_USAGE, str(exc)
        elif isinstance(exc, OSError):
            code, line = _os_error(exc)
        else:
            known = _aws_error(exc)
            if known is None:
                code, line = EXIT_FAILURE, f"unexpected {type(exc).__name__}: {exc}" + ("" if debug else " (run with --debug for the traceback)")
            else:
                code, line = known
        if debug:
            import traceback

            traceback.print_exc()
        _error(line)
        return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
