"""Build the Lambda layer that carries the deno binary: ``<layer dir>/bin/deno`` (``/opt/bin/deno`` in Lambda).

The binary comes from the ``deno`` wheel on PyPI for the Lambda architecture,
fetched with ``pip download`` (no Docker, no download outside the package index)
and extracted from the wheel's ``.data/scripts/`` folder. The version is the one
pinned in ``requirements.lock``, so the layer runs exactly the Deno that
``flux dev`` and the tests run.

Why AL2023: deno 2.x needs glibc >= 2.27 (its ``GLIBC_2.27`` symbol version is not
weak), and only the Amazon Linux 2023 Lambda runtimes (python3.12 and later) have
it; python3.11 runs on Amazon Linux 2 (glibc 2.26), where this binary cannot start.

Builds are cached by version and architecture under the cache directory; a build
goes to a temporary folder first and is renamed into place, so an interrupted build
never leaves a half-written layer that a later run would trust.

Run it by hand: ``python layers/deno/build.py --arch arm64`` prints the layer folder.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

ARCHITECTURES = ("x86_64", "arm64")
_MACHINE = {"x86_64": "x86_64", "arm64": "aarch64"}
# Tags the deno wheels have used, newest first; pip's --platform does not widen a manylinux_2_N tag to older
# ones, so every candidate is listed. All are <= glibc 2.34 (Amazon Linux 2023).
_MANYLINUX = ("manylinux_2_27", "manylinux_2_28", "manylinux_2_17", "manylinux2014")
_STAMP = ".flux-layer-complete"
REPO_ROOT = Path(__file__).resolve().parents[2]


class LayerBuildError(RuntimeError):
    """The layer could not be built; the message says which step failed and why."""


@dataclass(frozen=True, slots=True)
class DenoLayer:
    directory: Path  # the layer's root: contains bin/deno
    version: str
    arch: str

    @property
    def binary(self) -> Path:
        return self.directory / "bin" / "deno"


def pinned_version(lock_file: Path | None = None) -> str:
    """The deno version from requirements.lock (else the installed package's version)."""
    lock_file = lock_file or REPO_ROOT / "requirements.lock"
    if lock_file.is_file():
        for line in lock_file.read_text(encoding="utf-8").splitlines():
            match = re.match(r"^deno==([0-9][0-9A-Za-z.+-]*)\s*(?:#.*)?$", line.strip())
            if match:
                return match.group(1)
    try:
        return metadata.version("deno")
    except metadata.PackageNotFoundError:
        raise LayerBuildError(f"no deno version pinned in {lock_file} and the deno package is not installed") \
            from None


def platform_tags(arch: str) -> list[str]:
    if arch not in _MACHINE:
        raise LayerBuildError(f"unknown Lambda architecture {arch!r}; use one of {', '.join(ARCHITECTURES)}")
    return [f"{tag}_{_MACHINE[arch]}" for tag in _MANYLINUX]


def layer_dir(cache_dir: Path, version: str, arch: str) -> Path:
    """``<cache>/deno-layer/2_9_8-x86_64``: no dots, because CDK takes a dotted folder name's tail for an extension."""
    return cache_dir / "deno-layer" / f"{version.replace('.', '_')}-{arch}"


def build_layer(cache_dir: Path, *, arch: str = "x86_64", version: str | None = None,
                pip: list[str] | None = None) -> DenoLayer:
    """The layer folder for ``arch``, built on the first call and reused afterwards."""
    version = version or pinned_version()
    target = layer_dir(cache_dir, version, arch)
    if (target / _STAMP).is_file() and (target / "bin" / "deno").is_file():
        return DenoLayer(target, version, arch)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="deno-layer-", dir=target.parent) as scratch:
        work = Path(scratch)
        wheel = _download_wheel(work / "wheel", version, arch, pip or [sys.executable, "-m", "pip"])
        staged = work / "layer"
        _extract_binary(wheel, staged / "bin" / "deno")
        (staged / _STAMP).write_text(f"deno {version} {arch} from {wheel.name}\n", encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        os.replace(staged, target)
    return DenoLayer(target, version, arch)


def _download_wheel(into: Path, version: str, arch: str, pip: list[str]) -> Path:
    command = [*pip, "download", f"deno=={version}", "--only-binary=:all:", "--no-deps", "--dest", str(into),
               "--disable-pip-version-check", "--quiet"]
    for tag in platform_tags(arch):
        command += ["--platform", tag]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    wheels = sorted(into.glob("deno-*.whl")) if into.is_dir() else []
    if result.returncode != 0 or not wheels:
        detail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise LayerBuildError(f"pip could not download the deno {version} wheel for {arch} "
                              f"(tags {', '.join(platform_tags(arch))}): {' / '.join(detail)}")
    return wheels[0]


def _extract_binary(wheel: Path, destination: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        members = [n for n in archive.namelist() if re.match(r"^deno-[^/]+\.data/scripts/deno$", n)]
        if len(members) != 1:
            raise LayerBuildError(f"{wheel.name} has no deno binary under .data/scripts/")
        destination.parent.mkdir(parents=True, exist_ok=True)
        with archive.open(members[0]) as source, destination.open("wb") as out:
            shutil.copyfileobj(source, out, length=1 << 20)
    destination.chmod(destination.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH | stat.S_IRGRP
                      | stat.S_IROTH)


def _main() -> None:
    parser = argparse.ArgumentParser(description="Build the deno Lambda layer (prints its folder).")
    parser.add_argument("--arch", choices=ARCHITECTURES, default="x86_64")
    parser.add_argument("--version", default=None, help="deno version (default: the one in requirements.lock)")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="cache folder (default: $FLUX_BUILD_CACHE or ~/.cache/flux/build)")
    args = parser.parse_args()
    cache = args.cache_dir or Path(os.environ.get("FLUX_BUILD_CACHE") or Path.home() / ".cache" / "flux" / "build")
    try:
        layer = build_layer(cache, arch=args.arch, version=args.version)
    except LayerBuildError as exc:
        sys.exit(f"error: {exc}")
    print(layer.directory)


if __name__ == "__main__":
    _main()
