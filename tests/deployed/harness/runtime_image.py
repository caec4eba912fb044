"""The managed ``python3.12`` runtime's read-only part: ``/var/lang`` and ``/var/runtime``.

In the managed runtime (Amazon Linux 2023) the interpreter lives under ``/var/lang``
and ``/var/runtime`` holds the runtime interface client and the SDK (boto3, which
the Flux assets leave out on purpose because the runtime ships it). We build the
same two trees here:

* ``/var/lang`` is the prefix of a local CPython 3.12 (pyenv's on these machines),
  bind-mounted read-only; a different minor version would not load the 3.12 wheels
  in the assets, so anything else is refused with a clear message;
* ``/var/runtime`` is a private ``pip install --target`` of ``awslambdaric`` and
  ``boto3`` at the pinned versions, cached under ``$FLUX_DEPLOYED_CACHE`` (default
  ``~/.cache/flux/deployed``), plus a small ``bootstrap.py`` that sets ``sys.path``
  as the managed runtime does (``/var/task``, then ``/opt/python/...`` for layers,
  then ``/var/runtime``) and hands over to ``awslambdaric``.
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

AWSLAMBDARIC_VERSION = "4.2.2"
BOTO3_VERSION = "1.44.5"  # same as requirements.lock, so the tier and the functional tests agree
PINS = (f"awslambdaric=={AWSLAMBDARIC_VERSION}", f"boto3=={BOTO3_VERSION}", f"botocore=={BOTO3_VERSION}")

BOOTSTRAP = '''"""/var/runtime/bootstrap.py: what the managed python3.12 runtime does before the first poll."""
import os
import sys

task_root = os.environ.get("LAMBDA_TASK_ROOT", "/var/task")
for path in reversed([task_root, "/opt/python/lib/python3.12/site-packages", "/opt/python"]):
    if path not in sys.path:
        sys.path.insert(0, path)
os.chdir(task_root)

from awslambdaric.__main__ import main  # noqa: E402

main([sys.argv[0], os.environ["_HANDLER"]])
'''


class RuntimeImageError(RuntimeError):
    """The tier cannot build the python3.12 runtime (no interpreter, or pip failed)."""


@dataclass(frozen=True)
class RuntimeImage:
    lang: Path      # mounted at /var/lang
    runtime: Path   # mounted at /var/runtime

    @property
    def python_in_sandbox(self) -> str:
        return "/var/lang/bin/python3.12"


def _prefix_of(python: str) -> Path | None:
    try:
        out = subprocess.run([python, "-c", "import sys; print(sys.version_info[:2] == (3, 12)); print(sys.base_prefix)"],
                             capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = out.stdout.split()
    if out.returncode != 0 or len(lines) != 2 or lines[0] != "True":
        return None
    return Path(lines[1])


def find_python312() -> Path:
    """The prefix of a CPython 3.12: ``python3.12`` on PATH, else pyenv's versions."""
    candidates = [shutil.which("python3.12")]
    pyenv_root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    candidates += sorted(glob.glob(f"{pyenv_root}/versions/3.12.*/bin/python3.12"), reverse=True)
    for candidate in candidates:
        if candidate:
            prefix = _prefix_of(candidate)
            if prefix is not None and (prefix / "bin" / "python3.12").exists():
                return prefix
    raise RuntimeImageError("the deployed tier needs a CPython 3.12 (Lambda's python3.12 runtime): none found as "
                            "python3.12 on PATH or under ~/.pyenv/versions/3.12.*; install one (pyenv install 3.12)")


def cache_dir() -> Path:
    return Path(os.environ.get("FLUX_DEPLOYED_CACHE") or Path.home() / ".cache" / "flux" / "deployed")


def build_runtime_image() -> RuntimeImage:
    """Find 3.12 and build (once, cached by pins) the ``/var/runtime`` tree."""
    lang = find_python312()
    key = hashlib.sha256("\n".join((*PINS, BOOTSTRAP)).encode()).hexdigest()[:16]
    target = cache_dir() / f"var-runtime-{key}"
    if not (target / "bootstrap.py").is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix="var-runtime-", dir=target.parent))
        done = subprocess.run([str(lang / "bin" / "python3.12"), "-m", "pip", "install", "--quiet",
                               "--disable-pip-version-check", "--no-compile", "--target", str(staging), *PINS],
                              capture_output=True, text=True, timeout=600, check=False)
        if done.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            raise RuntimeImageError(f"pip could not install {' '.join(PINS)} for python3.12:\n{done.stderr[-2000:]}")
        (staging / "bootstrap.py").write_text(BOOTSTRAP)
        for path in [staging, *staging.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        try:
            staging.rename(target)
        except OSError:  # another session built it meanwhile
            shutil.rmtree(staging, ignore_errors=True)
    return RuntimeImage(lang=lang, runtime=target)
