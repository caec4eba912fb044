"""The CDK app (``cdk.json`` runs ``python -m infra.app``): one Flux stack for one project and stage.

Inputs, first found wins:

* project folder: context ``project`` (``-c project=examples/shop``), env ``FLUX_PROJECT``, ``examples/shop``;
* stage: context ``stage``, env ``FLUX_STAGE``, ``dev``;
* architecture: context ``arch``, env ``FLUX_ARCH``, ``x86_64`` (or ``arm64``);
* assets: context ``assets`` = ``build`` (default: real, cached bundles) or ``placeholder``
  (a one-file stand-in that only infra unit tests use).

Every synth runs cdk-nag's AwsSolutions checks; the suppressions, each with its
reason, live in infra/nag.py. The checkov findings Flux accepts are written into the
template as metadata by infra/checkov.py (checkov itself runs in the infra tests).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "18,20")

import aws_cdk as cdk

from functions.shared.manifest import load_project
from infra.checkov import apply_checkov
from infra.nag import apply_nag
from infra.plan import StackPlan, plan_stack
from infra.stack import FluxStack, StackOptions

DEFAULT_PROJECT = "examples/shop"


@dataclass
class BuiltApp:
    app: cdk.App
    stack: FluxStack
    plan: StackPlan


def build_app(project_dir: str | Path, options: StackOptions, *, outdir: str | Path | None = None,
              context: dict[str, Any] | None = None, app: cdk.App | None = None) -> BuiltApp:
    """The app with its one stack, nag checks attached; call ``app.synth()`` to write the cloud assembly."""
    project = load_project(project_dir)
    plan = plan_stack(project, options.stage)
    if app is None:
        app = cdk.App(outdir=str(outdir) if outdir is not None else None, context=context or None)
    stack = FluxStack(app, plan.stack_name, project=project, plan=plan, options=options)
    apply_nag(app, stack)
    apply_checkov(stack)
    return BuiltApp(app, stack, plan)


def _from_context(app: cdk.App, key: str, env: str, default: str) -> str:
    value = app.node.try_get_context(key)
    return str(value) if value else os.environ.get(env) or default


def main() -> None:
    app = cdk.App()  # reads the -c values and the output folder the CDK CLI passes
    options = StackOptions(stage=_from_context(app, "stage", "FLUX_STAGE", "dev"),
                           arch=_from_context(app, "arch", "FLUX_ARCH", "x86_64"),
                           assets="placeholder" if app.node.try_get_context("assets") == "placeholder" else "build")
    build_app(_from_context(app, "project", "FLUX_PROJECT", DEFAULT_PROJECT), options, app=app)
    app.synth()


if __name__ == "__main__":
    main()
