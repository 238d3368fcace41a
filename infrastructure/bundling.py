"""Docker-free packaging of the Python Lambda functions.

Project code and third-party dependencies ship separately: every function gets a small code
asset holding only its own package plus the shared domain core (``fashion_pipeline``), and all
functions share one layer with the third-party wheels. Editing a handler then re-uploads a
few kilobytes instead of every dependency, and adding a function is one call::

    lambda_.Function(self, "Inference", code=python_code("inference"),
                     handler="inference.handler.handler", layers=[deps], ...)

Bundling runs in-process (``ILocalBundling``) and installs wheels offline from
``build/wheelhouse`` (filled once by ``make build/wheelhouse/.done``, part of ``make test``),
so synthesis needs neither Docker nor network access. The Docker image in ``BundlingOptions``
is a required placeholder only: the local bundler either succeeds or raises, so CDK never
falls back to Docker.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import jsii
from aws_cdk import AssetHashType, BundlingOptions, DockerImage, ILocalBundling
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

REPO_ROOT = Path(__file__).resolve().parent.parent
LAMBDAS_DIR = REPO_ROOT / "lambdas"
WHEELHOUSE_DIR = REPO_ROOT / "build" / "wheelhouse"
# Installed layers by asset hash: a synthesis whose requirements and wheels are unchanged copies
# the layer instead of running pip again (the report layer alone is ~215 MB of matplotlib and
# numpy). The hash covers everything the install depends on, so a stale entry cannot be used.
LAYER_CACHE_DIR = REPO_ROOT / "build" / "layer-cache"
DEFAULT_REQUIREMENTS = LAMBDAS_DIR / "requirements.txt"

RUNTIME = lambda_.Runtime.PYTHON_3_12
RUNTIME_PYTHON = "3.12"
ARCHITECTURE = lambda_.Architecture.ARM_64
SHARED_PACKAGES: tuple[str, ...] = ("fashion_pipeline",)

# Must match the wheelhouse target in the Makefile: Graviton (arm64) and CPython 3.12.
PIP_TARGET_ARGS: tuple[str, ...] = (
    "--platform", "manylinux2014_aarch64",
    "--platform", "manylinux_2_17_aarch64",
    "--platform", "manylinux_2_28_aarch64",
    "--python-version", "3.12",
    "--implementation", "cp",
)  # fmt: skip

# Bump to invalidate every cached asset when the bundling logic itself changes.
_BUNDLER_VERSION = "1"
# The laptop side (CLI, web UI, local mode) lives in tools/, outside lambdas/: nothing to exclude.
_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo", ".DS_Store")
_PLACEHOLDER_IMAGE = DockerImage.from_registry("scratch-not-used")


class BundlingError(RuntimeError):
    """Local bundling could not produce an asset."""


def python_code(function_package: str, *, shared_packages: Sequence[str] = SHARED_PACKAGES) -> lambda_.Code:
    """Code asset with ``lambdas/<function_package>/`` and the shared packages, no third-party code.

    Pair it with :func:`dependencies_layer`. The asset hash covers exactly the bundled files,
    so unrelated edits under ``lambdas/`` do not redeploy this function.
    """
    packages = _unique((function_package, *shared_packages))
    sources = [LAMBDAS_DIR / name for name in packages]
    for source in sources:
        if not source.is_dir():
            raise BundlingError(f"Lambda package {source} does not exist")
    digest = hashlib.sha256(f"code:{_BUNDLER_VERSION}".encode())
    for source in sources:
        _hash_tree(digest, source)
    return lambda_.Code.from_asset(
        str(LAMBDAS_DIR),
        asset_hash_type=AssetHashType.CUSTOM,
        asset_hash=digest.hexdigest(),
        bundling=BundlingOptions(image=_PLACEHOLDER_IMAGE, local=_PackageCopier(sources)),
    )


def dependencies_layer(
    scope: Construct,
    id: str,
    requirements_file: str | os.PathLike[str] = DEFAULT_REQUIREMENTS,
    *,
    description: str | None = None,
) -> lambda_.LayerVersion:
    """Layer with the third-party packages of ``requirements_file`` installed into ``python/``.

    A relative ``requirements_file`` is taken from the repository root, e.g.
    ``dependencies_layer(self, "InferenceDeps", "lambdas/inference/requirements.txt")``.

    Wheels come only from ``build/wheelhouse`` (no index), so the result is reproducible and
    offline; the asset hash covers the requirements, the available wheels and the target
    platform.
    """
    requirements = Path(requirements_file)
    requirements = (requirements if requirements.is_absolute() else REPO_ROOT / requirements).resolve()
    if not requirements.is_file():
        raise BundlingError(f"requirements file {requirements} does not exist")
    wheels = _wheelhouse_wheels()
    digest = hashlib.sha256(f"layer:{_BUNDLER_VERSION}:{' '.join(PIP_TARGET_ARGS)}:pyc={bool(runtime_interpreter())}".encode())
    digest.update(requirements.read_bytes())
    for wheel in wheels:
        digest.update(f"\0{wheel.name}\0{wheel.stat().st_size}".encode())
    return lambda_.LayerVersion(
        scope,
        id,
        code=lambda_.Code.from_asset(
            str(requirements.parent),
            asset_hash_type=AssetHashType.CUSTOM,
            asset_hash=digest.hexdigest(),
            bundling=BundlingOptions(image=_PLACEHOLDER_IMAGE, local=_PipInstaller(requirements, digest.hexdigest())),
        ),
        compatible_runtimes=[RUNTIME],
        compatible_architectures=[ARCHITECTURE],
        description=description or f"Third-party Python packages from {_display(requirements)}",
    )


@jsii.implements(ILocalBundling)
class _PackageCopier:
    def __init__(self, sources: Sequence[Path]) -> None:
        self._sources = list(sources)

    def try_bundle(self, output_dir: str, *_options: object, **_kwoptions: object) -> bool:
        for source in self._sources:
            shutil.copytree(source, Path(output_dir) / source.name, ignore=_IGNORED, dirs_exist_ok=True)
        return True


@jsii.implements(ILocalBundling)
class _PipInstaller:
    def __init__(self, requirements: Path, asset_hash: str) -> None:
        self._requirements = requirements
        self._cached = LAYER_CACHE_DIR / asset_hash

    def try_bundle(self, output_dir: str, *_options: object, **_kwoptions: object) -> bool:
        if (self._cached / ".complete").is_file():
            shutil.copytree(self._cached / "python", Path(output_dir) / "python", dirs_exist_ok=True)
            return True
        self._install(Path(output_dir))
        self._keep(Path(output_dir))
        return True

    def _keep(self, output_dir: Path) -> None:
        """Copy the installed layer into the cache: built aside, then renamed into place, so
        that two syntheses at once (pytest's workers) never see half an entry."""
        building = LAYER_CACHE_DIR / f".{self._cached.name}.{os.getpid()}"
        shutil.rmtree(building, ignore_errors=True)
        shutil.copytree(output_dir / "python", building / "python")
        (building / ".complete").touch()
        try:
            building.rename(self._cached)
        except OSError:  # another synthesis kept the same layer first
            shutil.rmtree(building, ignore_errors=True)

    def _install(self, output_dir: Path) -> None:
        command = [
            sys.executable, "-m", "pip", "install",
            "--no-index", "--find-links", str(WHEELHOUSE_DIR),
            "--only-binary=:all:", *PIP_TARGET_ARGS,
            "--target", str(output_dir / "python"),
            # Byte-code compiled by the synthesizing interpreter would not match the runtime's.
            "--no-compile",
            "--disable-pip-version-check", "--quiet",
            "-r", str(self._requirements),
        ]  # fmt: skip
        # Ignore user/site pip configuration so that only the wheelhouse can be used.
        env = {**os.environ, "PIP_CONFIG_FILE": os.devnull}
        result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise BundlingError(
                f"pip could not install {_display(self._requirements)} from {_display(WHEELHOUSE_DIR)}: "
                "run `make build/wheelhouse/.done` (or `make test`) after changing requirements, and "
                f"make the Makefile's wheelhouse target download any new requirements file.\n{result.stderr}"
            )
        _compile_for_runtime(output_dir / "python")


@functools.lru_cache(maxsize=1)
def runtime_interpreter() -> str | None:
    """A working local CPython of the Lambda runtime's version, if there is one."""
    candidates = [shutil.which(f"python{RUNTIME_PYTHON}"),
                  *sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{RUNTIME_PYTHON}*/bin/python{RUNTIME_PYTHON}")))]
    for candidate in filter(None, candidates):
        probe = subprocess.run([candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                               capture_output=True, text=True, check=False)
        if probe.returncode == 0 and probe.stdout.strip() == RUNTIME_PYTHON:
            return candidate
    return None


def _compile_for_runtime(target: Path) -> None:
    """Byte-compile the layer with the runtime's own Python version.

    /opt is read-only on Lambda, so modules without .pyc are compiled again on every cold
    start (the inference handler imports in ~2.4 s that way, ~0.45 s with .pyc).
    Unchecked-hash .pyc files carry no timestamps, so the asset stays reproducible.
    Without a local python3.12 the layer ships without them (slower cold starts only).
    """
    interpreter = runtime_interpreter()
    if interpreter is None:
        return
    subprocess.run(
        [interpreter, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash", str(target)],
        check=True, capture_output=True,
    )


def _wheelhouse_wheels() -> list[Path]:
    wheels = sorted(WHEELHOUSE_DIR.glob("*.whl")) if WHEELHOUSE_DIR.is_dir() else []
    if not wheels:
        raise BundlingError(
            f"no wheels in {_display(WHEELHOUSE_DIR)}: run `make test` (or `make build/wheelhouse/.done`) "
            "once to download the Lambda dependencies for linux/arm64, then synthesize again"
        )
    return wheels


def _hash_tree(digest: hashlib._Hash, root: Path) -> None:
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root.parent)
        if not path.is_file() or _IGNORED(str(path.parent), [path.name]) or {"__pycache__", "local"} & set(relative.parts):
            continue
        digest.update(f"\0{relative.as_posix()}\0".encode())
        digest.update(path.read_bytes())


def _unique(names: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(names))


def _display(path: Path) -> str:
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)
