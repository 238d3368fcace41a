"""Every command in README.md is run by a test.

The fenced shell blocks are read from README.md when the tests run, so an edit to the README
is tested as it stands. Each command is one of three kinds:

- **executed**: the walk (``test_the_readme_commands_run_against_local_mode``) runs it in bash,
  as a user types it, against one local-mode server (``fashion-pipeline local up`` in its own
  process), in README order. Where the README deploys (``npx aws-cdk@2 deploy``), the walk runs
  the "Local mode" section instead, whose server then stands in for the stack: it publishes the
  stack's outputs on a local CloudFormation stack, so ``describe-stacks``, ``train``, ``detect``
  and ``aws s3`` work unchanged with ``AWS_ENDPOINT_URL`` exported as that section says.
- **mapped** (``MAPPED``): a ``make`` target that cannot run inside the suite as typed; its
  recipe is read with ``make -n`` and an equivalent check runs.
- **AWS-only** (``AWS_ONLY``): needs a real account; each has an equivalent offline check.

A new command is executed by the walk; one that cannot run offline fails it until it is listed
in ``AWS_ONLY`` with its check. ``test_every_readme_command_is_executed_mapped_or_aws_only``
fails on a stale entry.

The walk changes only what cannot be typed verbatim in a test: local mode's default ports
(4566, 8000) become free ports, ``local up`` is given the session's synthesized template,
``<name>`` placeholders take the value of that name in ``local up``'s JSON line, ``train
--wait`` polls every 0.5 s instead of 30 s, ``ui`` listens on a free port, and after an upload
under ``annotations/<dataset>/`` the walk waits, as a user would, until every object of the
dataset has its conversion report.
"""

from __future__ import annotations

import json
import os
import re
import select
import shlex
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest

from fashion_pipeline.labels import CATEGORY_NAMES, DEFAULT_MAPPING
from fashion_pipeline.layout import STACK_NAME

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SHELL_FENCES = {"bash", "sh", "shell", "console"}
LOCAL_SECTION = "Local mode"


@dataclass(frozen=True)
class Command:
    section: str  # the ``##`` heading the block is under
    text: str  # as typed: continuation lines joined, comment removed
    comment: str  # the comment after the command (or on its continuation lines)
    line: int  # README line where the command starts

    @property
    def normalized(self) -> str:
        return " ".join(self.text.split())


def _split_comment(line: str) -> tuple[str, str]:
    """``code  # comment`` -> (code, comment); a ``#`` inside quotes is code."""
    quote = None
    for index, char in enumerate(line):
        if quote:
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or line[index - 1].isspace()):
            return line[:index], line[index + 1:].strip()
    return line, ""


def readme_commands(text: str | None = None) -> list[Command]:
    text = README.read_text() if text is None else text
    commands: list[Command] = []
    section, fence, pending, comments, start = "", None, "", [], 0
    for number, line in enumerate(text.splitlines(), start=1):
        if fence is None:
            if line.startswith("## "):
                section = line[3:].strip()
            elif line.startswith("```"):
                fence = line[3:].strip().lower()
            continue
        if line.startswith("```"):
            fence = None
            continue
        if fence not in SHELL_FENCES:
            continue
        code, comment = _split_comment(line)
        if not pending:
            start = number
        if comment:
            comments.append(comment)
        if code.rstrip().endswith("\\"):
            pending += code.rstrip()[:-1] + " "
            continue
        whole = (pending + code).strip()
        if whole:
            commands.append(Command(section, whole, " ".join(comments), start))
        pending, comments = "", []
    return commands


def section_title(prefix: str) -> str:
    titles = [c.section for c in readme_commands() if c.section.startswith(prefix)]
    assert titles, f"README has no shell block under a section starting {prefix!r}"
    return titles[0]


# -- commands that do not run as typed in the walk ---------------------------------------------

# Commands (normalized) whose recipe the suite checks instead of running it as typed.
MAPPED = {
    "make demo": "test_make_demo_runs_the_offline_pipeline",
    "make test": "test_make_test_runs_this_suite",
    "make synth": "test_make_synth_synthesizes_the_app_the_suite_tests",
}

# Patterns of commands that need a real AWS account, each with the offline check that stands in.
AWS_ONLY = {
    r"^npx aws-cdk@2 deploy\b": "test_the_deploy_command_names_the_stack_and_a_valid_configuration"
                                " (and the walk runs the Local mode section in its place)",
    r"^awscurl\b": "the walk sends the same request (method, headers, body, URL) to local mode's API, unsigned",
}


def aws_only(command: Command) -> str | None:
    return next((pattern for pattern in AWS_ONLY if re.search(pattern, command.normalized)), None)


def test_every_readme_command_is_executed_mapped_or_aws_only():
    commands = readme_commands()
    assert len(commands) >= 20, "the README's shell blocks were not found"
    normalized = {c.normalized for c in commands}
    stale = [name for name in MAPPED if name not in normalized]
    assert not stale, f"MAPPED lists commands the README no longer has: {stale}"
    unused = [p for p in AWS_ONLY if not any(re.search(p, c.normalized) for c in commands)]
    assert not unused, f"AWS_ONLY lists commands the README no longer has: {unused}"
    # Mapped commands are each checked by a test of this module.
    assert all(callable(globals().get(test)) for test in MAPPED.values())
    # The walk needs a server: the Local mode section starts one.
    assert any("local up" in c.normalized for c in commands if c.section == LOCAL_SECTION)


def test_the_command_parser_reads_continuations_comments_and_quotes():
    text = ("## A\n\n```bash\nx --a 1 \\\n    --b '# not a comment'   # a comment\n# only a comment\n"
            "echo \"a#b\"\n```\n\n```json\n{\"no\": 1}\n```\n")
    assert readme_commands(text) == [Command("A", "x --a 1      --b '# not a comment'", "a comment", 4),
                                     Command("A", 'echo "a#b"', "", 7)]


# -- mapped commands ---------------------------------------------------------------------------

def make_recipe(target: str) -> list[str]:
    """What ``make <target>`` runs once its prerequisites (.venv, wheelhouse) are in place."""
    # Under `make test` this runs inside make: without its MAKEFLAGS/MAKELEVEL the inner make
    # prints only the recipe, not "make[1]: Entering directory".
    env = {name: value for name, value in os.environ.items() if name not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    result = subprocess.run(["make", "--no-print-directory", "-n", "-o", ".venv/.installed", "-o", "build/wheelhouse/.done", target],
                            cwd=ROOT, capture_output=True, text=True, check=True, env=env)
    return [line for line in result.stdout.splitlines() if line.strip()]


def test_make_test_runs_this_suite():
    """``make test`` is what is running now: pytest over testpaths, which hold this module."""
    import tomllib

    assert make_recipe("test") == [".venv/bin/python -m pytest -n 2"]
    testpaths = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["testpaths"]
    assert any(Path(__file__).resolve().is_relative_to(ROOT / p) for p in testpaths)
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_make_synth_synthesizes_the_app_the_suite_tests(synthesized):
    """``make synth`` is ``python app.py``; the session's synthesis is ``app.build_app`` with cdk-nag."""
    assert make_recipe("synth") == [".venv/bin/python app.py"]
    assert synthesized.template_dict["Resources"] and synthesized.nag_findings == []


@pytest.mark.slow
def test_make_demo_runs_the_offline_pipeline(tmp_path):
    """``make demo``'s recipe, run from a scratch folder so that demo-output/ lands there."""
    [recipe] = make_recipe("demo")
    argv = shlex.split(recipe)
    argv[0] = str(ROOT / argv[0])
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["PYTHONPATH"] = str(ROOT)  # the editable install also covers this; explicit for a bare venv
    result = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "boxes match the annotation" in result.stdout and "demo finished" in result.stdout
    assert sorted(p.suffix for p in (tmp_path / "demo-output").glob("*.detections.png"))
    # What the quick start says it does: faults reported, an emulated training, a GIF refused.
    assert "rejected by reason" in result.stdout and "HTTP 415 unsupported_media_type" in result.stdout


# -- AWS-only commands: their offline checks ---------------------------------------------------

def test_the_deploy_command_names_the_stack_and_a_valid_configuration():
    import app
    from infrastructure.config import CONTEXT_KEY, PipelineConfig

    [deploy] = [c for c in readme_commands() if re.search(r"^npx aws-cdk@2 deploy\b", c.normalized)]
    words = shlex.split(deploy.text)
    assert words[3] == STACK_NAME == app.STACK_ID
    contexts = dict(words[i + 1].split("=", 1) for i, word in enumerate(words) if word == "-c")
    overrides = json.loads(contexts[CONTEXT_KEY])
    config = PipelineConfig.from_context({**app.cdk_json_context()[CONTEXT_KEY], **overrides})
    assert config.alarm_email == overrides["alarmEmail"]


# -- the walk ----------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Walk:
    workspace: Path
    template: Path
    env: dict[str, str]
    ports: dict[str, str] = field(default_factory=dict)  # README port -> the walk's port
    info: dict[str, str] = field(default_factory=dict)  # local up's JSON line
    servers: list[subprocess.Popen] = field(default_factory=list)
    sample: Path | None = None  # the folder ``fashion-pipeline sample`` wrote
    ran: list[Command] = field(default_factory=list)

    def aws(self, service: str):
        return boto3.Session(aws_access_key_id="local", aws_secret_access_key="local", region_name="us-east-1").client(
            service, endpoint_url=self.info["aws_endpoint_url"])

    def rewrite(self, text: str) -> str:
        for readme_port, port in self.ports.items():
            text = text.replace(f"127.0.0.1:{readme_port}", f"127.0.0.1:{port}").replace(f"localhost:{readme_port}", f"localhost:{port}")
        for name, value in self.info.items():
            text = text.replace(f"<{name}>", value)
        if re.search(r"\bfashion-pipeline (train|deploy)\b.*--wait", text) and "--interval" not in text:
            text += " --interval 0.5"
        if re.search(r"\bfashion-pipeline batch-detect\b.*--wait", text) and "--interval" not in text:
            text += " --interval 0.5 --poll-seconds 2"  # a model the job starts is polled every 2 s (30 min in 900 polls)
        deploy = re.search(r"\bfashion-pipeline deploy --dataset (\S+) --version (\S+)", text)
        if deploy:  # the README's version name is of the run it was written from: the walk's first run of that dataset
            text = text.replace(deploy.group(2), self.first_version(deploy.group(1)))
        return text

    def versions(self, dataset: str) -> list[dict[str, Any]]:
        """The dataset's model versions, oldest first."""
        rekognition = self.aws("rekognition")
        [project] = rekognition.describe_projects(ProjectNames=[f"fashion-pipeline-{dataset}"])["ProjectDescriptions"]
        versions = rekognition.describe_project_versions(ProjectArn=project["ProjectArn"])["ProjectVersionDescriptions"]
        return sorted(versions, key=lambda v: v["CreationTimestamp"])

    def first_version(self, dataset: str) -> str:
        return self.versions(dataset)[0]["ProjectVersionArn"].split("/version/")[1].split("/")[0]

    def bash(self, text: str, *, timeout: float = 120) -> subprocess.CompletedProcess:
        """One command in its own bash, with the variables the earlier commands set or exported."""
        state = self.workspace / ".walk-state.sh"
        script = (f"set -a; [ -f {shlex.quote(str(state))} ] && . {shlex.quote(str(state))}; set +a; set -o pipefail\n"
                  f"set -a\n{text}\nstatus=$?\nexport -p > {shlex.quote(str(state))}\nexit $status\n")
        began = time.monotonic()
        result = subprocess.run(["bash", "-c", script], cwd=self.workspace, env=self.env, capture_output=True, text=True, timeout=timeout)
        with (self.workspace.parent / "walk.log").open("a") as log:
            log.write(f"$ {text}\n[exit {result.returncode}, {time.monotonic() - began:.1f} s]\n{result.stdout}{result.stderr}\n")
        return result

    def exported(self) -> dict[str, str]:
        result = self.bash("env -0")
        return dict(item.split("=", 1) for item in result.stdout.split("\0") if "=" in item)

    def start_local(self, command: Command) -> None:
        argv = shlex.split(command.text)
        assert argv[:3] == ["fashion-pipeline", "local", "up"], command
        defaults = {"--port": "4566", "--api-port": "8000"}
        for option, default in defaults.items():
            readme_port = argv[argv.index(option) + 1] if option in argv else default
            self.ports[readme_port] = str(_free_port())
            if option in argv:
                argv[argv.index(option) + 1] = self.ports[readme_port]
            else:
                argv += [option, self.ports[readme_port]]
        argv += ["--template", str(self.template)]
        env = {**self.exported(), "FASHION_PIPELINE_LOCAL_VISIBILITY_SCALE": "0.001"}
        process = subprocess.Popen(["bash", "-c", shlex.join(argv)], cwd=self.workspace, env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.servers.append(process)
        ready, _, _ = select.select([process.stdout], [], [], 90)
        assert ready, f"{command.text} printed nothing within 90 s"
        self.info = json.loads(process.stdout.readline())
        threading.Thread(target=process.stdout.read, daemon=True).start()  # never let the pipe fill
        # What the README says the line holds.
        promised = re.findall(r'"(\w+)"', command.comment)
        assert set(promised) <= set(self.info), (promised, sorted(self.info))

    def start_ui(self, command: Command) -> None:
        text = self.rewrite(command.text)
        if "--port" not in text:
            text += " --port 0"
        process = subprocess.Popen(["bash", "-c", text], cwd=self.workspace, env=self.exported(),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.servers.append(process)
        ready, _, _ = select.select([process.stdout], [], [], 30)
        assert ready, f"{command.text}: no address printed; stderr: {process.stderr.read() if process.poll() is not None else ''}"
        line = process.stdout.readline()
        url = re.search(r"at (http://\S+)", line).group(1)
        with urllib.request.urlopen(url, timeout=10) as page:
            assert page.status == 200 and b"<html" in page.read().lower()
        process.terminate()
        process.wait(timeout=10)

    def wait_for_conversion(self, dataset: str, timeout: float = 90) -> None:
        s3 = self.aws("s3")
        paginate = lambda bucket, prefix: [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
                                           for o in page.get("Contents", [])]
        deadline = time.monotonic() + timeout
        while True:
            annotations = paginate(self.info["dataset_bucket"], f"annotations/{dataset}/")
            reports = paginate(self.info["artifacts_bucket"], f"reports/{dataset}/")
            if len(reports) >= len(annotations):
                return
            assert time.monotonic() < deadline, f"{len(reports)} of {len(annotations)} objects converted after {timeout} s"
            time.sleep(0.3)

    def close(self) -> None:
        for process in self.servers:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()


def user_files(workspace: Path) -> None:
    """The files the README's commands name, as a user would have them."""
    from fashion_pipeline_tools.sample import SampleSet, generate, to_coco

    # The images of ``fashion-pipeline sample`` (its defaults): whichever of the two datasets'
    # models the API serves (it re-reads the pointer only every POINTER_TTL_SECONDS), photo.jpg
    # is one of its training images, as the split depends on pair ids and seed, not on the dataset.
    validation = generate(workspace / "DeepFashion2" / "validation", images=40, seed=7)
    # annos/ holds 30 files, annos.zip and the COCO file 5 each: each annotation is uploaded
    # once, as the README's alternatives would be by a user who has all three.
    files = sorted(validation.files)
    with zipfile.ZipFile(workspace / "annos.zip", "w") as archive:
        for name in files[30:35]:
            archive.write(validation.annotations / name, name)
    coco_part = workspace / "coco-part"
    (coco_part / "annos").mkdir(parents=True)
    for name in files[35:]:
        shutil.copy(validation.annotations / name, coco_part / "annos" / name)
    coco = to_coco(SampleSet(coco_part, coco_part / "annos", validation.images, files=files[35:]))
    (workspace / "validation_coco.json").write_text(json.dumps(coco))
    for name in files[30:]:
        (validation.annotations / name).unlink()
    (workspace / "labels.json").write_text(json.dumps({name: DEFAULT_MAPPING.get(name, name) for name in CATEGORY_NAMES.values()}))
    (workspace / ".venv").symlink_to(ROOT / ".venv")  # the README's commands run in the checkout


PHOTO_DATASET = "validation"  # the dataset the README's photo.jpg commands name (--dataset, ?dataset=)


def photo_for(walk: Walk) -> None:
    """``photo.jpg``: a JPEG the dataset's deployed model was trained on (the emulated model knows only those)."""
    s3 = walk.aws("s3")
    name = f"{walk.info['model_parameter_prefix']}/{PHOTO_DATASET}"
    pointer = json.loads(walk.aws("ssm").get_parameter(Name=name)["Parameter"]["Value"])
    runs = s3.list_objects_v2(Bucket=walk.info["artifacts_bucket"], Prefix=f"runs/{pointer['dataset']}/")["Contents"]
    manifest = sorted(o["Key"] for o in runs if o["Key"].endswith("train.manifest"))[0]
    lines = s3.get_object(Bucket=walk.info["artifacts_bucket"], Key=manifest)["Body"].read().splitlines()
    source = next(json.loads(line)["source-ref"] for line in lines if json.loads(line)["source-ref"].endswith(".jpg"))
    bucket, key = source[len("s3://"):].split("/", 1)
    (walk.workspace / "photo.jpg").write_bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def send_like_awscurl(walk: Walk, command: Command) -> None:
    """The awscurl call's request, unsigned, to local mode's API (it checks no signature)."""
    words = shlex.split(command.text.split(">")[0])
    method, headers, body, url = "GET", {}, None, None
    index = 1
    while index < len(words):
        word = words[index]
        if word == "-X":
            method, index = words[index + 1], index + 2
        elif word == "-H":
            name, value = words[index + 1].split(":", 1)
            headers[name.strip()] = value.strip()
            index += 2
        elif word == "--data-binary":
            body, index = (walk.workspace / words[index + 1].lstrip("@")).read_bytes(), index + 2
        elif word == "--service":
            index += 2
        else:
            url, index = word, index + 1
    url = url.replace("${API}", walk.info["api_url"]).replace("$API", walk.info["api_url"])
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=30) as response:
        payload = response.read()
        assert response.status == 200
    if headers.get("Accept") == "image/png":
        assert payload.startswith(b"\x89PNG")
    elif urllib.parse.urlsplit(url).path.endswith("/models"):
        assert {model["dataset"] for model in json.loads(payload)["models"]} >= {PHOTO_DATASET}
    else:
        assert json.loads(payload)["garments"]


def check_answers_shown(walk: Walk, readme: str) -> None:
    """The README's example answers have the keys (and fixed texts) of the real answers."""
    photo = (walk.workspace / "photo.jpg").read_bytes()
    api = walk.info["api_url"].rstrip("/")
    request = urllib.request.Request(f"{api}/detections?dataset={PHOTO_DATASET}", data=photo, method="POST",
                                     headers={"Content-Type": "image/jpeg", "Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        real = json.loads(response.read())
    shown = json.loads(next(block for block in re.findall(r"```json\n(.*?)```", readme, re.S) if '"garments"' in block))

    def shape(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: shape(v) for k, v in value.items()}
        if isinstance(value, list):
            return shape(value[0]) if value else []
        return type(value).__name__ if not isinstance(value, (int, float)) or isinstance(value, bool) else "number"

    assert shape(shown) == shape(real), (shape(shown), shape(real))
    assert shown["model"]["note"] == real["model"]["note"] and shown["model"]["emulated"] is real["model"]["emulated"]
    with urllib.request.urlopen(f"{api}/model?dataset={PHOTO_DATASET}", timeout=30) as response:
        model = json.loads(response.read())
    described = re.search(r"`GET /model` answers `(\{.*?\})`", readme, re.S)
    if described:
        assert set(re.findall(r'"(\w+)":', described.group(1))) <= set(model), (described.group(1), sorted(model))
    # "a test-split image (`000001.jpg`, ...) gets an empty answer": the sample's test images.
    said_empty = re.search(r"test-split image \(([^)]*)\)\s+gets an empty answer", readme)
    for name in re.findall(r"`([^`]+)`", said_empty.group(1)) if said_empty else []:
        image = walk.sample / "image" / name
        request = urllib.request.Request(f"{api}/detections?dataset=demo", data=image.read_bytes(), method="POST",  # the Local mode section's
                                         headers={"Content-Type": "image/jpeg", "Accept": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert json.loads(response.read())["garments"] == [], name
    gif = urllib.request.Request(walk.info["api_url"].rstrip("/") + "/detections", data=b"GIF89a" + bytes(64), method="POST",
                                 headers={"Content-Type": "image/jpeg", "Accept": "application/json"})
    try:
        urllib.request.urlopen(gif, timeout=30)
        raise AssertionError("a GIF was accepted")
    except urllib.error.HTTPError as error:
        said = re.search(r"a GIF\s+sent as an image answers `(\d+) (\{.*?\}\})`", readme, re.S)
        if said:
            assert (error.code, json.loads(error.read())) == (int(said.group(1)), json.loads(" ".join(said.group(2).split())))


# What a command's success looks like beyond its exit status 0, by the command's shape.
def _expect(walk: Walk, command: Command, text: str, result: subprocess.CompletedProcess, started: float) -> None:
    reports = re.search(r"\baws s3 cp s3://\S+ (\S+) --recursive .*evaluation/", text)
    if reports:  # the runs' evaluation reports, downloaded: each page with its charts beside it
        pages = sorted((walk.workspace / reports.group(1)).glob("*/evaluation/index.html"))
        assert pages and all((page.parent / "charts" / "metrics.svg").is_file() for page in pages), (text, pages)
    upload = re.search(r"\baws s3 (?:sync|cp) (\S+) (s3://\S+)", text)
    if upload:
        source, destination = upload.groups()
        expanded = walk.bash(f"printf '%s' {destination}").stdout  # $BUCKET as the shell has it
        bucket, _, prefix = expanded[len("s3://"):].partition("/")
        keys = [o["Key"] for o in walk.aws("s3").list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]
        if (walk.workspace / source).is_dir():
            assert len(keys) >= len(list((walk.workspace / source).iterdir())), (text, keys)
        else:
            assert keys == [prefix], (text, keys)
        annotations = re.match(r"annotations/([^/]+)/", prefix)
        if annotations:
            walk.wait_for_conversion(annotations.group(1))
        if prefix.startswith("requests/"):
            sfn = walk.aws("stepfunctions")
            deadline = time.monotonic() + 15
            while not [e for e in sfn.list_executions(stateMachineArn=walk.info["state_machine_arn"])["executions"]
                       if e["startDate"].timestamp() >= started - 1]:
                assert time.monotonic() < deadline, "the training request started no run"
                time.sleep(0.3)
    sample = re.search(r"\bfashion-pipeline sample (\S+)", text)
    if sample:
        walk.sample = walk.workspace / sample.group(1)
        count = re.search(r"(\d+) DeepFashion2-format images", command.comment)
        if count:
            assert len(list((walk.workspace / sample.group(1) / "image").iterdir())) == int(count.group(1))
    if re.search(r"\bfashion-pipeline convert\b", text):
        out = Path(walk.workspace / re.search(r"--out (\S+)", text).group(1))
        assert {p.name for p in out.iterdir()} >= {"train.manifest", "test.manifest", "report.json"}
    deployed = re.search(r"\bfashion-pipeline deploy --dataset (\S+) --version (\S+) --wait", text)
    if deployed:  # the API answers with it once its containers re-read the pointers (POINTER_TTL_SECONDS)
        dataset, version = deployed.groups()
        deadline = time.monotonic() + 30
        while True:
            with urllib.request.urlopen(f"{walk.info['api_url'].rstrip('/')}/model?dataset={dataset}", timeout=30) as response:
                model = json.loads(response.read())
            if (model["version"], model["status"]) == (version, "RUNNING"):
                break
            assert time.monotonic() < deadline, f"the API still serves {model['version']} 30 s after deploying {version}"
            time.sleep(0.5)
    if re.search(r"\bfashion-pipeline detect\b", text):
        render = re.search(r"--render (\S+)", text)
        if render:
            assert (walk.workspace / render.group(1)).read_bytes()[:4] in (b"\x89PNG", b"\xff\xd8\xff\xe0", b"\xff\xd8\xff\xdb")
        elif "training image" in command.comment or "photo.jpg" in text:
            assert "no garments found" not in result.stdout and "label" in result.stdout, result.stdout
    if re.search(r"\bfashion-pipeline batch-detect\b", text):
        # The summary of its own job, the estimate before it, and one result line per object listed.
        assert "succeeded in" in result.stdout and result.stdout.index("estimate:") < result.stdout.index("requested"), result.stdout
        job = re.search(r"^job (\S+): (\d+) objects under s3://([^/]+)/(\S+)", result.stdout, re.M)
        s3 = walk.aws("s3")
        listed = [o["Key"] for o in s3.list_objects_v2(Bucket=job.group(3), Prefix=job.group(4)).get("Contents", [])]
        results = s3.get_object(Bucket=walk.info["artifacts_bucket"], Key=f"batch/{job.group(1)}/results.jsonl")["Body"].read()
        assert sorted(json.loads(line)["key"] for line in results.splitlines()) == sorted(listed) and len(listed) == int(job.group(2))
        if "--render" in text:
            rendered = s3.list_objects_v2(Bucket=walk.info["artifacts_bucket"], Prefix=f"batch/{job.group(1)}/rendered/")["KeyCount"]
            assert rendered == len(listed), (rendered, len(listed))



@pytest.mark.slow
def test_the_readme_commands_run_against_local_mode(synthesized, tmp_path):
    readme = README.read_text()
    commands = readme_commands(readme)
    workspace = tmp_path / "user"
    workspace.mkdir()
    user_files(workspace)
    template = tmp_path / "template.json"
    template.write_text(json.dumps(synthesized.template_dict))
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "VIRTUAL_ENV", "CDK_"))}
    # No ~/.aws of the machine's user: what the commands need, the README exports.
    env.update(HOME=str(home), AWS_CONFIG_FILE=str(home / "config"), AWS_SHARED_CREDENTIALS_FILE=str(home / "credentials"))
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if not p.startswith(str(ROOT / ".venv")))
    walk = Walk(workspace, template, env)
    local_section = [c for c in commands if c.section == LOCAL_SECTION]
    order: list[Command] = []
    for command in commands:
        if command.section == LOCAL_SECTION:
            continue
        order.append(command)
        if re.search(r"^npx aws-cdk@2 deploy\b", command.normalized):
            order += local_section  # the walk's deployment
    if not walk_has(order, local_section):
        order = local_section + order
    try:
        for command in order:
            if command.normalized in MAPPED:
                continue
            if aws_only(command):
                if re.search(r"^awscurl\b", command.normalized):
                    send_like_awscurl(walk, command)
                    walk.ran.append(command)
                continue
            if "local up" in command.normalized:
                walk.start_local(command)
            elif re.search(r"\bfashion-pipeline ui\b", command.text):
                walk.start_ui(command)
            else:
                if "photo.jpg" in command.text and not (workspace / "photo.jpg").exists():
                    photo_for(walk)
                text = walk.rewrite(command.text)
                started = time.time()
                result = walk.bash(text)
                assert result.returncode == 0, (f"README line {command.line}: {command.text}\nexit {result.returncode}\n"
                                                f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
                _expect(walk, command, text, result, started)
            walk.ran.append(command)
        check_answers_shown(walk, readme)
    finally:
        walk.close()
    skipped = [c.text for c in commands if c not in walk.ran and c.normalized not in MAPPED and not aws_only(c)]
    assert not skipped, skipped


def walk_has(order: list[Command], section: list[Command]) -> bool:
    return bool(section) and all(c in order for c in section)
