"""The infra package's error root: everything that stops a synth or a deploy before AWS is asked."""

from __future__ import annotations

from functions.shared.errors import FluxError


class InfraError(FluxError):
    """A stack cannot be built from this project (bad stage name, unbuildable asset, missing tool)."""

    status, code = 400, "infra_error"
