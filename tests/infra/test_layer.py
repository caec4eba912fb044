"""The deno Lambda layer: built from the deno wheel for the Lambda platform, and it runs."""

from __future__ import annotations

import subprocess

import pytest

from infra.packaging import cache_root, deno_layer, layer_builder


def test_layer_holds_a_working_linux_deno_of_the_pinned_version() -> None:
    builder = layer_builder()
    layer = deno_layer("x86_64", cache_root())
    binary = layer / "bin" / "deno"
    result = subprocess.run([str(binary), "--version"], capture_output=True, text=True, check=True, timeout=60)
    assert result.stdout.startswith(f"deno {builder.pinned_version()} ")
    assert "x86_64-unknown-linux-gnu" in result.stdout
    assert layer.name == f"{builder.pinned_version().replace('.', '_')}-x86_64"
    assert deno_layer("x86_64", cache_root()) == layer  # cached


def test_platform_tags_and_version_pin(tmp_path) -> None:
    builder = layer_builder()
    assert all(tag.endswith("_aarch64") for tag in builder.platform_tags("arm64"))
    assert "manylinux_2_27_x86_64" in builder.platform_tags("x86_64")
    with pytest.raises(builder.LayerBuildError):
        builder.platform_tags("mips")
    lock = tmp_path / "requirements.lock"
    lock.write_text("attrs==1.0\ndeno==2.1.0\n")
    assert builder.pinned_version(lock) == "2.1.0"
