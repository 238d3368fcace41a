"""What ships: the shared runtime core imports no AWS SDK and no laptop code, and the function
assets carry exactly their own package and the core."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import fashion_pipeline
from tests.synthesis import Synthesized

CORE = Path(fashion_pipeline.__file__).parent
FUNCTIONS = {"converter", "workflow", "inference", "evaluation_report", "batch"}
# Imported in the child process with these made unimportable: an import of any of them, at any
# depth and at import time, fails the whole check.
BLOCKED = ("boto3", "botocore", "aws_cdk", "moto", "fashion_pipeline_tools", *sorted(FUNCTIONS))

_CHILD = """
import importlib, importlib.abc, json, pkgutil, sys
blocked = set(json.loads(sys.argv[1]))
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ImportError(f"the shared core imported {name}")
sys.meta_path.insert(0, Block())
sys.path.insert(0, sys.argv[2])
import fashion_pipeline
names = [m.name for m in pkgutil.walk_packages(fashion_pipeline.__path__, "fashion_pipeline.")]
for name in names:
    importlib.import_module(name)
print(json.dumps(names))
"""


def core_modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages(fashion_pipeline.__path__, "fashion_pipeline."))


def test_every_core_module_imports_with_the_aws_sdk_and_the_laptop_side_blocked() -> None:
    done = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(BLOCKED), str(CORE.parent)],
                          capture_output=True, text=True, cwd="/", check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    imported = json.loads(done.stdout)
    assert sorted(imported) == core_modules() and len(imported) >= 15


def test_the_block_catches_an_sdk_import() -> None:
    # The check above could pass vacuously if the finder never fired: prove it does.
    done = subprocess.run([sys.executable, "-c", _CHILD.replace("import fashion_pipeline\n", "import botocore\n", 1),
                           json.dumps(BLOCKED), str(CORE.parent)], capture_output=True, text=True, check=False)  # fmt: skip
    assert done.returncode != 0 and "the shared core imported botocore" in done.stderr


def _code_assets(synthesized: Synthesized) -> dict[str, Path]:
    assets = {}
    for logical_id, resource in synthesized.resources("AWS::Lambda::Function").items():
        code = resource["Properties"]["Code"]
        if "S3Key" in code:
            assets[logical_id] = synthesized.outdir / f"asset.{code['S3Key'].removesuffix('.zip')}"
    return assets


def test_function_assets_carry_their_package_and_the_core_only(synthesized: Synthesized) -> None:
    assets = _code_assets(synthesized)
    project = {
        logical_id: root for logical_id, root in assets.items() if (root / "fashion_pipeline").is_dir()
    }
    assert len(project) >= 4, assets
    core_files = sorted(p.relative_to(CORE).as_posix() for p in CORE.rglob("*.py") if "__pycache__" not in p.parts)
    for logical_id, root in project.items():
        function, = {p.name for p in root.iterdir()} - {"fashion_pipeline"}
        assert function in FUNCTIONS, (logical_id, function)
        shipped = sorted(p.relative_to(root / "fashion_pipeline").as_posix() for p in (root / "fashion_pipeline").rglob("*") if p.is_file())
        assert shipped == core_files, logical_id
        everything = [p.name for p in root.rglob("*")]
        for laptop in ("cli.py", "webui.py", "api_client.py", "demo.py", "sample.py", "index.html", "local"):
            assert laptop not in everything, (logical_id, laptop)
