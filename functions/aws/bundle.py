"""Where a Lambda finds the user project inside its code asset (no heavy imports: the authorizer uses it too)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from functions.aws import names


def project_root(env: Mapping[str, str]) -> Path:
    """``$FLUX_PROJECT_DIR``, else ``$LAMBDA_TASK_ROOT/project`` (where infra/packaging.py puts it)."""
    explicit = env.get(names.PROJECT_DIR)
    if explicit:
        return Path(explicit)
    return Path(env.get("LAMBDA_TASK_ROOT") or names.TASK_ROOT) / names.BUNDLE_PROJECT_DIR
