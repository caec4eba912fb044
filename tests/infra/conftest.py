"""Shared fixtures for the CDK tests: each stack is synthesized once per session.

Two projects: examples/shop as it is (whatever functions it has), and a richer
project made here (database provisioning, JWT and API-key routes, an ordered async
function) so every branch of the stack is exercised without editing examples/.
Template tests use the placeholder code asset (they assert on the template only);
test_cli.py synthesizes examples/shop with the real, cached assets.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "18,20")

REPO = Path(__file__).resolve().parents[2]
SHOP = REPO / "examples" / "shop"

FULL_PROJECT: dict[str, Any] = {
    "flux.json": {
        "name": "fullshop",
        "auth": {"default": "none", "jwt": {"issuer": "https://issuer.test", "secret_name": "JWT_SECRET",
                                            "algorithms": ["HS256"]}},
        "cors": {"origins": ["http://localhost:3000"], "headers": ["content-type", "x-api-key"], "max_age": 300},
        # A dev stage with the proxy asked for (the dev profile has none by default: tests/infra/test_profiles.py)
        "database": {"provision": True, "proxy": True},
        "observability": {"retention_days": 30},
    },
    "functions": {
        "hello": {"route": "/hello", "method": "POST"},
        "create_order": {"route": "/orders", "method": "POST", "rate_limit": {"requests": 10, "per_seconds": 60},
                         "pushes": ["send_invoice"], "secrets": ["STRIPE_KEY"]},
        # Reaches create_order's secrets and queue only through "invokes" (the callee runs in its Lambda).
        "checkout": {"route": "/checkout", "method": "POST", "invokes": ["create_order"], "concurrency": 7},
        "list_orders": {"route": "/orders", "method": "GET"},
        "get_order": {"route": "/orders/{id}", "method": "GET", "auth": "api_key", "invokes": ["audit_trail"]},
        "orders_report_daily": {"route": "/reports/daily", "method": "GET", "auth": "jwt", "timeout_ms": 25000},
        "send_invoice": {"async": True, "retry": {"max_attempts": 5}, "timeout_ms": 20000, "memory_mb": 512,
                         "pushes": ["flaky_webhook"], "concurrency": 4},
        "flaky_webhook": {"async": True, "retry": {"max_attempts": 2}, "ordering": {"group_by": "customer"}},
        "audit_trail": {"internal": True, "secrets": ["AUDIT_TOKEN"]},
    },
}


def write_project(root: Path, spec: dict[str, Any]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "flux.json").write_text(json.dumps(spec["flux.json"]), encoding="utf-8")
    for name, config in spec["functions"].items():
        folder = root / "functions" / name
        folder.mkdir(parents=True)
        (folder / "flux.json").write_text(json.dumps(config), encoding="utf-8")
        (folder / "index.ts").write_text("export default async function handler(input) { return input; }\n",
                                         encoding="utf-8")
    return root


@dataclass
class Synthesized:
    built: Any  # infra.app.BuiltApp
    template: Any  # aws_cdk.assertions.Template
    raw: dict[str, Any]
    path: Path

    def resources(self, kind: str) -> dict[str, dict[str, Any]]:
        return {k: r for k, r in self.raw["Resources"].items() if r["Type"] == kind}


def synthesize(project_dir: Path, outdir: Path, cache: Path, stage: str = "dev") -> Synthesized:
    from aws_cdk.assertions import Template

    from infra.app import build_app
    from infra.stack import StackOptions

    built = build_app(project_dir, StackOptions(stage=stage, assets="placeholder", cache_dir=cache), outdir=outdir)
    assembly = built.app.synth()
    path = Path(assembly.directory) / f"{built.plan.stack_name}.template.json"
    return Synthesized(built, Template.from_stack(built.stack), json.loads(path.read_text()), path)


@pytest.fixture(scope="session")
def placeholder_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("flux-cache")


@pytest.fixture(scope="session")
def full_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_project(tmp_path_factory.mktemp("projects") / "fullshop", FULL_PROJECT)


@pytest.fixture(scope="session")
def full(full_project: Path, placeholder_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return synthesize(full_project, tmp_path_factory.mktemp("cdk-full"), placeholder_cache)


@pytest.fixture(scope="session")
def shop(placeholder_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return synthesize(SHOP, tmp_path_factory.mktemp("cdk-shop"), placeholder_cache)


@pytest.fixture(scope="session")
def shop_prod(placeholder_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return synthesize(SHOP, tmp_path_factory.mktemp("cdk-shop-prod"), placeholder_cache, stage="prod")


def no_aws_env(**extra: str) -> dict[str, str]:
    """This process's environment without any AWS credentials, region or profile, and no metadata lookups."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CDK_"))}
    env.update(AWS_CONFIG_FILE="/nonexistent/flux-test/config", AWS_SHARED_CREDENTIALS_FILE="/nonexistent/creds",
               AWS_EC2_METADATA_DISABLED="true", **extra)
    return env
