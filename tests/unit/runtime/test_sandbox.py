"""The Deno worker's sandbox: command line, environment and limits (DESIGN §7, functions/runtime/sandbox.py).

Pure: builds the command for a FunctionSpec loaded from a tmp project; nothing is executed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from functions.runtime.sandbox import (
    BOOTSTRAP,
    DENIED_NETWORKS,
    NO_IMPORT_HOST,
    WorkerCommand,
    deno_executable,
    worker_command,
)
from functions.shared.manifest import FunctionSpec, load_project

DENO = "/opt/fake/deno"
GIB = 1024 ** 3


def load_spec(tmp_path: Path, config: dict[str, Any] | None = None, name: str = "hello") -> tuple[FunctionSpec, Path]:
    root = tmp_path / "app"
    folder = root / "functions" / name
    folder.mkdir(parents=True)
    (root / "flux.json").write_text(json.dumps({"name": "demo"}))
    (folder / "index.ts").write_text("export default async () => ({ ok: true });\n")
    if config is not None:
        (folder / "flux.json").write_text(json.dumps(config))
    project = load_project(root)
    return project.function(name), project.root


CHANNEL = Path("/tmp/flux-channels-test/hello.fifo")


def command(tmp_path: Path, config: dict[str, Any] | None = None, *,
            namespace: bool = False) -> tuple[WorkerCommand, FunctionSpec]:
    spec, root = load_spec(tmp_path, config)
    return worker_command(spec, deno=DENO, cache_dir=tmp_path / "cache", project_root=root, channel=CHANNEL,
                          namespace=namespace), spec


def flags(cmd: WorkerCommand) -> list[str]:
    """Deno's own flags: everything between `run` and the script (later args go to the script)."""
    return cmd.argv[2:cmd.argv.index(str(BOOTSTRAP))]


def flag_values(cmd: WorkerCommand, name: str) -> list[str]:
    return [arg.split("=", 1)[1] for arg in flags(cmd) if arg.startswith(f"{name}=")]


def test_runs_the_bootstrap_with_deno_run(tmp_path: Path) -> None:
    cmd, spec = command(tmp_path)
    assert cmd.argv[:2] == [DENO, "run"]
    script_at = cmd.argv.index(str(BOOTSTRAP))
    assert cmd.argv[script_at + 1:] == [spec.entry.resolve().as_uri(), "hello", str(spec.directory.resolve()),
                                        str(CHANNEL)]
    assert all(arg.startswith("--") for arg in flags(cmd))


def test_no_prompt_and_no_dangerous_permissions(tmp_path: Path) -> None:
    cmd, _ = command(tmp_path, {"allow_net": ["api.example.com:443"]})
    assert "--no-prompt" in flags(cmd)
    forbidden = ("--allow-env", "--allow-run", "--allow-ffi", "--allow-sys", "--allow-all", "--allow-hrtime")
    for arg in cmd.argv:
        assert not arg.startswith(forbidden), arg
        assert arg not in ("-A", "--unstable", "--allow-write", "--allow-import"), arg
    # The one write the worker gets is its protocol FIFO (the bootstrap revokes it before user code loads).
    assert flag_values(cmd, "--allow-write") == [str(CHANNEL)]


def test_imports_never_fall_back_to_denos_default_allowlist(tmp_path: Path) -> None:
    closed, _ = command(tmp_path / "a")
    assert flag_values(closed, "--allow-import") == [NO_IMPORT_HOST]
    assert NO_IMPORT_HOST.split(":")[0].endswith(".invalid")  # RFC 6761: can never resolve
    open_, _ = command(tmp_path / "b", {"allow_net": ["api.example.com:443"]})
    assert flag_values(open_, "--allow-import") == ["api.example.com:443"]


def test_namespace_wraps_deno_and_masks_state_and_other_functions(tmp_path: Path) -> None:
    cmd, spec = command(tmp_path, namespace=True)
    assert cmd.argv[:6] == ["unshare", "--user", "--map-root-user", "--mount", "--propagation", "private"]
    script = cmd.argv[cmd.argv.index("-c") + 1]
    assert "mount -t tmpfs" in script and "exec \"$@\"" in script
    deno_at = cmd.argv.index(DENO)
    assert cmd.argv[deno_at + 1] == "run"
    assert cmd.argv[deno_at - 2:deno_at] == [str(spec.directory.resolve()), "hello"]


def test_a_symlink_out_of_the_function_folder_stops_the_worker_start(tmp_path: Path) -> None:
    from functions.runtime.errors import WorkerStartFailed

    spec, root = load_spec(tmp_path)
    (spec.directory / "root").symlink_to("/")
    with pytest.raises(WorkerStartFailed, match="root: symbolic link to /"):
        worker_command(spec, deno=DENO, cache_dir=tmp_path / "cache", project_root=root, channel=CHANNEL,
                       namespace=False)


def test_read_is_limited_to_the_function_directory(tmp_path: Path) -> None:
    cmd, spec = command(tmp_path)
    reads = flag_values(cmd, "--allow-read")
    assert reads == [str(spec.directory.resolve())]
    assert Path(reads[0]) == (tmp_path / "app" / "functions" / "hello").resolve()
    assert "--allow-read" not in flags(cmd)  # never the unrestricted form


def test_no_network_allow_without_allow_net(tmp_path: Path) -> None:
    cmd, _ = command(tmp_path)
    assert not [arg for arg in cmd.argv if arg.startswith("--allow-net")]


def test_allow_net_lists_exactly_the_declared_hosts(tmp_path: Path) -> None:
    cmd, _ = command(tmp_path, {"allow_net": ["api.example.com:443", "hooks.example.org"]})
    assert flag_values(cmd, "--allow-net") == ["api.example.com:443,hooks.example.org"]


@pytest.mark.parametrize("config", [None, {"allow_net": ["api.example.com:443"]}])
def test_private_ranges_are_always_denied(tmp_path: Path, config: dict[str, Any] | None) -> None:
    cmd, _ = command(tmp_path, config)
    denied = flag_values(cmd, "--deny-net")
    assert len(denied) == 1
    entries = denied[0].split(",")
    for cidr in ("127.0.0.0/8", "10.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12", "192.168.0.0/16", "localhost"):
        assert cidr in entries
    assert entries == list(DENIED_NETWORKS)
    for special in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "100.64.0.0/10", "198.18.0.0/15",
                    "192.0.0.0/24", "0.0.0.0/8", "224.0.0.0/4", "240.0.0.0/4", "[::1]"):
        assert special in entries


def test_environment_is_scrubbed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    host_values = {
        "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
        "AWS_SESSION_TOKEN": "session-token-value",
        "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001",
        "DATABASE_URL": "postgres://user:pw@10.0.0.5/db",
        "FLUX_ADMIN_KEY": "admin-key-value",
    }
    for name, value in host_values.items():
        monkeypatch.setenv(name, value)
    cmd, _ = command(tmp_path)
    assert not [name for name in cmd.env if name.startswith("AWS_")]
    assert set(cmd.env) <= {"PATH", "HOME", "DENO_DIR", "DENO_NO_UPDATE_CHECK", "DENO_NO_PROMPT", "NO_COLOR", "TZ",
                            "LANG"}
    for value in host_values.values():
        assert value not in cmd.env.values()
        assert not any(value in arg for arg in cmd.argv)
    assert cmd.env["HOME"] == cmd.env["DENO_DIR"] == str(tmp_path / "cache")
    assert cmd.env["PATH"] == "/usr/bin:/bin"


@pytest.mark.parametrize("memory_mb", [64, 256, 1024])
def test_heap_limit_equals_memory_mb(tmp_path: Path, memory_mb: int) -> None:
    cmd, _ = command(tmp_path, {"memory_mb": memory_mb})
    assert flag_values(cmd, "--v8-flags") == [f"--max-old-space-size={memory_mb}"]


def test_default_memory_gives_a_data_limit_above_one_gib(tmp_path: Path) -> None:
    cmd, spec = command(tmp_path)
    assert spec.config.memory_mb == 256
    assert flag_values(cmd, "--v8-flags") == ["--max-old-space-size=256"]
    assert cmd.data_limit_bytes > GIB


@pytest.mark.parametrize("memory_mb", [64, 128, 256, 512, 4096])
def test_data_limit_sits_above_the_heap_limit(tmp_path: Path, memory_mb: int) -> None:
    cmd, _ = command(tmp_path, {"memory_mb": memory_mb})
    assert cmd.data_limit_bytes > memory_mb * 1024 * 1024
    if memory_mb >= 256:
        assert cmd.data_limit_bytes > GIB


def test_cwd_is_the_project_root(tmp_path: Path) -> None:
    cmd, _ = command(tmp_path)
    assert cmd.cwd == str((tmp_path / "app").resolve())


def test_deno_executable_honours_flux_deno(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLUX_DENO", "/custom/deno")
    assert deno_executable() == "/custom/deno"


def test_a_path_with_a_comma_is_refused_rather_than_widening_allow_read(tmp_path):
    import json

    from functions.runtime.errors import WorkerStartFailed
    from functions.runtime.sandbox import worker_command
    from functions.shared.manifest import load_project

    root = tmp_path / "my,project"
    (root / "functions" / "f").mkdir(parents=True)
    (root / "flux.json").write_text(json.dumps({"name": "p"}))
    (root / "functions" / "f" / "index.ts").write_text("export default async () => 1;")
    spec = load_project(root).functions["f"]
    with pytest.raises(WorkerStartFailed, match="','"):
        worker_command(spec, deno="deno", cache_dir=tmp_path / "cache", project_root=root)
