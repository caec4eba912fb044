"""flux.d.ts agrees with the code written against it: examples/shop (functions and lib/) type-checks with Deno."""

from __future__ import annotations

import filecmp
import os
import subprocess
from pathlib import Path

import pytest

from functions.runtime.sandbox import deno_executable

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
SHOP = REPO / "examples" / "shop"


def test_the_shop_copy_of_flux_d_ts_is_the_scaffolded_one() -> None:
    assert filecmp.cmp(SHOP / "flux.d.ts", REPO / "functions" / "runtime" / "bootstrap" / "flux.d.ts", shallow=False)


def test_examples_shop_type_checks(tmp_path: Path) -> None:
    files = sorted(str(p.relative_to(SHOP)) for p in [*SHOP.glob("functions/*/index.ts"), *SHOP.glob("lib/*.ts")])
    assert "lib/money.ts" in files and "functions/payment_webhook/index.ts" in files
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "DENO_DIR": str(tmp_path),
           "DENO_NO_UPDATE_CHECK": "1", "NO_COLOR": "1"}
    result = subprocess.run([deno_executable(), "check", "--quiet", *files], cwd=SHOP, env=env, capture_output=True,
                            text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
