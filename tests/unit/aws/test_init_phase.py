"""What the Lambda entry modules do in INIT (at import) and what they leave to the request that needs it."""

from __future__ import annotations

from typing import Any

import pytest

from functions.aws import entry_authorizer, names, runtime_state
from functions.shared import aws_clients


def test_lazy_client_is_created_on_first_use_and_only_once(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[tuple[str, dict[str, Any]]] = []

    class Fake:
        def get_secret_value(self, **kwargs: Any) -> dict[str, Any]:
            return {"SecretString": kwargs["SecretId"]}

    def fake_client(service: str, **options: Any) -> Fake:
        made.append((service, options))
        return Fake()

    monkeypatch.setattr(aws_clients, "client", fake_client)
    lazy = aws_clients.LazyClient("secretsmanager", read_timeout_s=2)
    assert made == []
    assert lazy.get_secret_value(SecretId="a") == {"SecretString": "a"}
    assert lazy.get_secret_value(SecretId="b") == {"SecretString": "b"}
    assert made == [("secretsmanager", {"read_timeout_s": 2})]
    with pytest.raises(AttributeError):
        lazy._private  # noqa: B018 - private names are never forwarded (copy/pickle probes)


class NoExtensionsApi:
    """A span extension whose registration is refused (these tests are about the state, not the extension)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.active = False

    def start(self) -> bool:
        return False


def test_runtime_state_is_prepared_only_inside_a_lambda(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[str] = []
    monkeypatch.setattr(runtime_state, "build_state", lambda role, **_: built.append(role) or object())
    monkeypatch.setattr(runtime_state, "_states", {})
    monkeypatch.setattr(runtime_state, "_extension", None)
    monkeypatch.setattr(runtime_state, "SpanFlushExtension", NoExtensionsApi)
    monkeypatch.delenv(names.LAMBDA_RUNTIME_API, raising=False)
    runtime_state.prepare("http")
    assert built == []
    monkeypatch.setenv(names.LAMBDA_RUNTIME_API, "127.0.0.1:9001")
    runtime_state.prepare("http")
    assert built == ["http"]
    runtime_state.state("http")
    assert built == ["http"], "the prepared state is the one the first event uses"


def test_a_runtime_state_that_fails_in_init_is_built_again_by_the_first_event(monkeypatch: pytest.MonkeyPatch
                                                                            ) -> None:
    attempts: list[str] = []

    def flaky(role: str, **_: Any) -> object:
        attempts.append(role)
        if len(attempts) == 1:
            raise OSError("bundle not readable")
        return object()

    monkeypatch.setattr(runtime_state, "build_state", flaky)
    monkeypatch.setattr(runtime_state, "_states", {})
    monkeypatch.setattr(runtime_state, "_extension", None)
    monkeypatch.setattr(runtime_state, "SpanFlushExtension", NoExtensionsApi)
    monkeypatch.setenv(names.LAMBDA_RUNTIME_API, "127.0.0.1:9001")
    runtime_state.prepare("worker")  # must not raise: INIT carries on
    assert "worker" not in runtime_state._states
    assert runtime_state.state("worker") is not None
    assert attempts == ["worker", "worker"]


def test_an_authorizer_that_fails_in_init_refuses_with_503_then_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def broken(env: Any, **_: Any) -> Any:
        calls.append(1)
        raise KeyError("KEYS_TABLE")

    monkeypatch.setattr(entry_authorizer, "build_authorizer", broken)
    entry_authorizer.reset()
    entry_authorizer.prepare({names.LAMBDA_RUNTIME_API: "127.0.0.1:9001"})
    answer = entry_authorizer.handler({"routeKey": "GET /me"})
    assert answer["isAuthorized"] is True and answer["context"]["error"] == "auth_unavailable"
    assert len(calls) == 2
    entry_authorizer.prepare({})  # outside Lambda: nothing is built
    assert len(calls) == 2
    entry_authorizer.reset()


def test_a_secrets_store_costs_no_botocore_import_until_the_first_read() -> None:
    """INIT builds the store for every function with a secrets prefix; most never read one, so botocore
    (~7 ms of import) waits for the first ``ctx.secrets.get``, like the client it talks to."""
    import subprocess
    import sys

    probe = ("import sys\n"
             "from functions.runtime.aws_secrets import SecretsManagerStore\n"
             "from functions.shared.aws_clients import LazyClient\n"
             "store = SecretsManagerStore(LazyClient('secretsmanager'), 'flux/shop/dev/')\n"
             "print(sorted(m for m in ('botocore', 'boto3') if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr
