"""The CLI's one error boundary: every expected error is one line on stderr and a documented exit status."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fashion_pipeline_tools import cli
from fashion_pipeline_tools.cli import EXIT_BROKEN_PIPE, EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_USAGE, build_parser, main

URI = "s3://dataset-bucket/images/demo/"
ROOT = Path(__file__).parents[2]


def convert_args(sample_set, out, *extra):
    return ["convert", str(sample_set.annotations), "--images", str(sample_set.images), "--image-uri", URI, "--out", str(out), *extra]


def run_cli(*argv, env=None, **kwargs):
    """The installed command's code in a fresh interpreter, as a shell runs it."""
    return subprocess.run([sys.executable, "-m", "fashion_pipeline_tools.cli", *argv], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120, **kwargs)


def no_aws_env(**extra):
    keep = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return {**keep, "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
            "AWS_EC2_METADATA_DISABLED": "true", **extra}


# -- help and version ------------------------------------------------------------------
def parsers(parser: argparse.ArgumentParser, path=("fashion-pipeline",)):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from parsers(sub, (*path, name))


def test_every_option_of_every_command_has_help():
    missing = [
        (" ".join(path), action.dest)
        for path, parser in parsers(build_parser())
        for action in parser._actions
        if not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)) and not (action.help or "").strip()
    ]
    assert missing == []
    assert len(list(parsers(build_parser()))) >= 8  # the walk reaches every subcommand, local up too


def test_help_shows_the_defaults(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["convert", "--help"])
    assert exit.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 0.2)" in text and "(default: 0)" in text  # --test-fraction, --seed
    assert "(default: None)" not in text and "(default: False)" not in text
    with pytest.raises(SystemExit):
        main(["sample", "--help"])
    assert "(default: 40)" in " ".join(capsys.readouterr().out.split())


def test_version(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["--version"])
    assert exit.value.code == 0
    out = capsys.readouterr().out.strip()
    assert out == f"fashion-pipeline {cli.package_version()}" and cli.package_version() not in ("", "unknown")


# -- output paths ----------------------------------------------------------------------
def test_convert_into_an_uncreatable_folder_is_a_usage_error(sample_set, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for out in ("/proc/x", blocker / "out"):  # /proc refuses even root; a file cannot hold a folder
        assert main(convert_args(sample_set, out)) == EXIT_USAGE
        err = capsys.readouterr().err
        assert f"fashion-pipeline: error: --out {out}: cannot create the folder" in err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_an_unwritable_output_file_is_named(sample_set, tmp_path, capsys):
    (tmp_path / "out" / "report.json.part").mkdir(parents=True)  # the report cannot be written
    assert main(convert_args(sample_set, tmp_path / "out")) == EXIT_USAGE
    err = capsys.readouterr().err
    assert f"fashion-pipeline: error: {tmp_path / 'out' / 'report.json.part'}: Is a directory" in err
    assert "Traceback" not in err


def test_convert_piped_into_head_has_no_traceback(sample_set, tmp_path):
    command = " ".join(f"'{a}'" for a in [sys.executable, "-m", "fashion_pipeline_tools.cli", *convert_args(sample_set, tmp_path / "o")])
    done = subprocess.run(["bash", "-c", f"{command} | head -c 1; echo; echo ${{PIPESTATUS[0]}}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.stdout.splitlines()[-1] in ("0", str(EXIT_BROKEN_PIPE))  # 0 when the table fit in the pipe first
    assert done.stderr == ""


def test_a_closed_stdout_exits_141_quietly(sample_set, tmp_path):
    read, write = os.pipe()
    os.close(read)  # nobody will ever read: the first write breaks the pipe
    try:
        done = subprocess.run([sys.executable, "-m", "fashion_pipeline_tools.cli", *convert_args(sample_set, tmp_path / "o", "--json")],
                              cwd=ROOT, stdout=write, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write)
    assert done.returncode == EXIT_BROKEN_PIPE
    assert done.stderr == ""
    assert (tmp_path / "o" / "train.manifest").exists()


# -- AWS -------------------------------------------------------------------------------
def test_train_without_credentials(tmp_path):
    done = run_cli("train", "--dataset", "Demo", env=no_aws_env(AWS_DEFAULT_REGION="us-east-1", HOME=str(tmp_path)))
    assert done.returncode == EXIT_USAGE
    assert done.stderr.startswith("fashion-pipeline: error: no AWS credentials found")
    assert "Traceback" not in done.stderr


def test_train_without_a_region(tmp_path):
    done = run_cli("train", "--dataset", "Demo", env=no_aws_env(HOME=str(tmp_path)))
    assert done.returncode == EXIT_USAGE
    assert "no AWS region: pass --region" in done.stderr and "Traceback" not in done.stderr


def test_train_when_aws_cannot_be_reached(tmp_path):
    env = no_aws_env(HOME=str(tmp_path), AWS_DEFAULT_REGION="us-east-1", AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="y",
                     AWS_ENDPOINT_URL="http://127.0.0.1:9", AWS_MAX_ATTEMPTS="1")
    done = run_cli("train", "--dataset", "Demo", env=env)
    assert done.returncode == EXIT_FAILURE
    assert "fashion-pipeline: error: cannot reach AWS" in done.stderr and "Traceback" not in done.stderr


def test_an_aws_refusal_is_one_line(monkeypatch, capsys):
    from botocore.exceptions import ClientError

    def refuse(args):
        raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "not allowed"}}, "StartExecution")

    monkeypatch.setattr(cli, "_run", refuse)
    assert main(["train", "--dataset", "Demo"]) == EXIT_FAILURE
    assert capsys.readouterr().err == "fashion-pipeline: error: AWS refused StartExecution: AccessDeniedException: not allowed\n"


# -- the rest --------------------------------------------------------------------------
def test_ctrl_c_is_130(monkeypatch, capsys):
    monkeypatch.setattr(cli, "_run", lambda args: (_ for _ in ()).throw(KeyboardInterrupt()))
    assert main(["sample", "x"]) == EXIT_INTERRUPTED
    assert capsys.readouterr().err == "fashion-pipeline: error: interrupted\n"


def test_an_unexpected_error_is_one_line_and_debug_shows_the_traceback(monkeypatch, capsys):
    def boom(args):
        raise RuntimeError("something odd")

    monkeypatch.setattr(cli, "_run", boom)
    assert main(["sample", "x"]) == EXIT_FAILURE
    err = capsys.readouterr().err
    assert err == "fashion-pipeline: error: unexpected RuntimeError: something odd (run with --debug for the traceback)\n"
    for argv in (["--debug", "sample", "x"], ["sample", "x", "--debug"]):
        assert main(argv) == EXIT_FAILURE
        err = capsys.readouterr().err
        assert err.startswith("Traceback") and err.endswith("fashion-pipeline: error: unexpected RuntimeError: something odd\n")


# -- detect ----------------------------------------------------------------------------
@pytest.fixture
def api():
    from fashion_pipeline_tools.webui import LambdaBackend, serve
    from tests.fashion_pipeline_tools.web.fakes import FakeHandler, png_bytes, proxy

    handler = FakeHandler(detections=lambda event: proxy(200, png_bytes(colour=(9, 9, 9)))
                          if event["headers"].get("Accept") == "image/png" else proxy(200, {"garments": []}))
    server = serve(LambdaBackend(handler), port=0)
    yield server.url.rstrip("/"), handler
    server.shutdown()


@pytest.fixture
def image(tmp_path):
    from tests.fashion_pipeline_tools.web.fakes import photo

    return photo(tmp_path)


def test_detect_render_into_an_unwritable_path(api, image, tmp_path, capsys):
    endpoint, _ = api
    (tmp_path / "a-file").write_text("")
    for out in ("/proc/x/out.png", tmp_path / "a-file" / "out.png"):
        assert main(["detect", str(image), "--endpoint", endpoint, "--render", str(out)]) == EXIT_USAGE
        err = capsys.readouterr().err
        assert f"fashion-pipeline: error: --render {out}: cannot write the drawing" in err and "Traceback" not in err


@pytest.mark.parametrize("name", ["out.gif", "out.webp", "out"])
def test_render_refuses_other_extensions(name, image, capsys):
    with pytest.raises(SystemExit) as exit:
        main(["detect", str(image), "--endpoint", "http://127.0.0.1:9", "--render", name])
    assert exit.value.code == EXIT_USAGE
    assert "name it .png, .jpg or .jpeg" in capsys.readouterr().err


def test_a_stopped_model_is_not_worth_a_retry(api, image, capsys):
    from tests.fashion_pipeline_tools.web.fakes import error

    endpoint, handler = api
    handler.detections = error(503, "model_not_running", "the model is STOPPED, not RUNNING; an administrator must start it"
                               " (POST /model/start)", model={"status": "STOPPED"})
    assert main(["detect", str(image), "--endpoint", endpoint]) == EXIT_FAILURE
    err = capsys.readouterr().err
    assert "503 model_not_running: the model is STOPPED" in err and "POST /model/start" in err
    assert "retry in" not in err
    handler.detections = error(503, "model_starting", "the model is STARTING", retry_after=60, model={"status": "STARTING"})
    assert main(["detect", str(image), "--endpoint", endpoint]) == EXIT_FAILURE
    assert "retry in 60 s" in capsys.readouterr().err
