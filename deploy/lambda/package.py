"""Build the AWS Lambda deployment zip of the ingestion handler.

    python deploy/lambda/package.py                 # = make lambda-zip -> build/lambda/wikichurn-ingest.zip
    python deploy/lambda/package.py --from-env      # offline: this interpreter's installed packages

The zip holds ``wikichurn/`` (with its ``conf/`` defaults) and the handler's dependency closure,
nothing of Spark, MLflow or the model: ingestion needs only httpx, tenacity, pydantic(-settings),
PyYAML and boto3 (bundled rather than taken from the runtime, so the tested version is the one that
runs). By default the dependencies come from the package index as wheels for the Lambda platform
(CPython 3.11, manylinux2014 x86_64); ``--from-env`` copies the distributions installed in the
running interpreter instead (same platform, no network: what the tests use). Entries are sorted with
fixed timestamps, so the same inputs give the same zip.
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "build" / "lambda" / "wikichurn-ingest.zip"
# What `wikichurn.pipeline.ingest` imports, directly or through core.settings / core.storage.
HANDLER_REQUIREMENTS = (
    "httpx>=0.27",
    "tenacity>=8.2",
    "pydantic>=2.7",
    "pydantic-settings>=2.4",
    "pyyaml>=6",
    "boto3>=1.34",
)
LAMBDA_PIP_FLAGS = (
    "--platform=manylinux2014_x86_64",
    "--implementation=cp",
    "--python-version=3.11",
    "--only-binary=:all:",
)
_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can carry


def _closure(requirements: tuple[str, ...]) -> list[metadata.Distribution]:
    """The installed distributions ``requirements`` need, recursively (markers evaluated here)."""
    todo = [Requirement(r) for r in requirements]
    found: dict[str, metadata.Distribution] = {}
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in found:
            continue
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError as err:
            raise SystemExit(f"{req.name} is not installed in {sys.prefix}: cannot package --from-env") from err
        found[name] = dist
        for spec in dist.requires or []:
            child = Requirement(spec)
            extras = [{"extra": extra} for extra in req.extras] or [{"extra": ""}]
            if child.marker is None or any(child.marker.evaluate(env) for env in extras):
                todo.append(child)
    return sorted(found.values(), key=lambda d: canonicalize_name(d.metadata["Name"]))


def _copy_installed(target: Path) -> None:
    for dist in _closure(HANDLER_REQUIREMENTS):
        for file in dist.files or []:
            parts = Path(file).parts
            if ".." in parts or "__pycache__" in parts or file.suffix == ".pyc":
                continue  # scripts outside site-packages, byte code
            source = Path(dist.locate_file(file))
            if source.is_file():
                dest = target / file
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, dest)


def _pip_install(target: Path) -> None:
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--target", str(target), *LAMBDA_PIP_FLAGS]
    subprocess.run([*command, *HANDLER_REQUIREMENTS], check=True)


def _copy_project(target: Path) -> None:
    shutil.copytree(
        REPO / "src" / "wikichurn", target / "wikichurn", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )


def _write_zip(source: Path, out: Path) -> int:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    count = 0
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for path in sorted(p for p in source.rglob("*") if p.is_file()):
            if "__pycache__" in path.parts or path.relative_to(source).parts[0] == "bin":
                continue  # byte code, console scripts pip puts in bin/
            info = zipfile.ZipInfo(path.relative_to(source).as_posix(), date_time=_EPOCH)
            info.external_attr = (0o755 if path.stat().st_mode & 0o111 else 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
            count += 1
    tmp.replace(out)
    return count


def build(out: Path = DEFAULT_OUT, *, from_env: bool = False) -> Path:
    """Build the deployment zip at ``out`` and return its path."""
    with tempfile.TemporaryDirectory(prefix="wikichurn-lambda-") as tmp:
        staging = Path(tmp)
        if from_env:
            _copy_installed(staging)
        else:
            _pip_install(staging)
        _copy_project(staging)
        files = _write_zip(staging, out)
    print(f"{out}: {files} files, {out.stat().st_size / 1e6:.1f} MB")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description="Build the Lambda deployment zip of wikichurn's ingestion.")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"zip to write (default {DEFAULT_OUT})")
    parser.add_argument("--from-env", action="store_true", help="copy this interpreter's packages (offline)")
    args = parser.parse_args()
    build(args.out, from_env=args.from_env)


if __name__ == "__main__":
    main()
