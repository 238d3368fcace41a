"""The README documents what the code does: every configuration key, the stack outputs, the two commands.

Every shell command of the README is run by tests/test_readme.py."""

from pathlib import Path

from infrastructure.config import _PARSERS, PipelineConfig

ROOT = Path(__file__).resolve().parents[1]


def test_every_configuration_key_is_documented_with_its_default():
    readme = (ROOT / "README.md").read_text()
    defaults = PipelineConfig()
    import json

    for key, (attribute, _) in _PARSERS.items():
        assert f"| `{key}` | `{json.dumps(getattr(defaults, attribute))}` |" in readme, key


def test_cdk_json_ships_the_documented_defaults():
    import json

    shipped = json.loads((ROOT / "cdk.json").read_text())["context"]["fashion-pipeline:config"]
    assert PipelineConfig.from_context(shipped) == PipelineConfig()


def test_the_two_commands_and_ci():
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_the_stack_outputs_the_readme_lists_are_the_stacks(synthesized):
    readme = (ROOT / "README.md").read_text()
    import re

    sentence = re.search(r"The stack's outputs name everything you need: (.*?)\.\n", readme, re.S).group(1)
    listed = set(re.findall(r"`(\w+)`", sentence)) - {"apiAuth", "apiKey"}
    # ApiKeyId exists only with apiAuth: apiKey; the session's synthesis uses the default (iam).
    # The stack's own CfnOutputs; RestApi adds one more (its endpoint, the same as ApiUrl), whose
    # logical id ends in CDK's hash.
    named = {key for key in synthesized.template_dict["Outputs"] if not re.search(r"[0-9A-F]{8}$", key)}
    assert listed - {"ApiKeyId"} == named
    assert "ApiKeyId" in listed
