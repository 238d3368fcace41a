"""The README documents what the code does: every configuration key, the two commands."""

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
