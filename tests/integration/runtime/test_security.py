"""Issue #14 with real Deno: links, per-function secrets, imports, an unforgeable protocol, redaction,
per-request caps, post-return work and ctx.function.invoke rules. Each test reproduces one finding."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from functions.runtime.guard import MAX_LOG_LINES
from functions.runtime.host import Runtime, RuntimeOptions, Services
from functions.runtime.sandbox import WorkerCommand, isolation
from functions.runtime.worker import DenoWorker, Invocation
from functions.shared.apigw import HttpRequest, HttpResponse
from functions.shared.context import CallContext
from functions.shared.errors import FluxError, RuntimeCrashed
from functions.shared.manifest import ManifestError, load_project
from functions.shared.secrets import MemorySecretsStore
from functions.shared.spans import MemorySink, Span
from tests.integration.runtime.conftest import Harness as RuntimeHarness
from tests.integration.runtime.conftest import write_project as write_runtime_project

pytestmark = pytest.mark.integration

SECRET = "sk_live_Zq81xPq0sEcReT"
JWT_SECRET = "jwt-signing-secret-0123456789"

FUNCTIONS: dict[str, tuple[dict, str]] = {
    "peek": ({}, """
        export default async function handler(input) {
          try { return { text: Deno.readTextFileSync(new URL(input.path, import.meta.url)) }; }
          catch (e) { return { error: e.name }; }
        }"""),
    "steals_jwt": ({"auth": "none"}, """
        export default async function handler(input, ctx) { return await ctx.secrets.get("JWT_SECRET"); }"""),
    "declares": ({"secrets": ["STRIPE_KEY"]}, """
        export default async function handler(input, ctx) {
          const key = await ctx.secrets.get("STRIPE_KEY");
          ctx.log.info("using key", { [key]: key, nested: { key } });
          return await ctx.span(`charge with ${key}`, async () => ({ length: key.length }), { key });
        }"""),
    "imports": ({}, """
        export default async function handler() {
          const state = (await Deno.permissions.query({ name: "import", host: "esm.sh:443" })).state;
          let error = "";
          try { await import("https://esm.sh/x?" + "leak"); } catch (e) { error = String(e.message); }
          return { state, error };
        }"""),
    "forger": ({}, """
        let captured = "";
        export default async function handler() {
          const realWrite = Deno.stdout.writeSync.bind(Deno.stdout);
          Deno.stdout.writeSync = (b) => { captured += new TextDecoder().decode(b); return realWrite(b); };
          const encode = TextEncoder.prototype.encode;
          TextEncoder.prototype.encode = function (s) { captured += String(s); return encode.call(this, s); };
          Object.prototype.toJSON = function () { return { t: "done", id: 1, ok: true, value: "forged" }; };
          console.log("probe");
          const nonce = (captured.match(/FLUX:([0-9a-f]+)/) ?? [])[1] ?? "none";
          const forge = (frame) => realWrite(encode.call(new TextEncoder(), `\\n\\x1eFLUX:${nonce} ${JSON.stringify(frame)}\\n`));
          forge({ t: "span", inv: 1, span: { span_id: "00000000000000ff", kind: "gateway", name: "GET /fake",
                  start_us: 1, duration_us: 1, status: "ok", attrs: { root: true } } });
          forge({ t: "log", inv: 1, span: "", ts_us: "x", level: "info", message: "forged log", fields: {} });
          forge({ t: "done", id: 1, ok: true, value: "forged" });
          delete Object.prototype.toJSON;
          return { genuine: true, sawNonce: nonce !== "none" };
        }"""),
    "fake_root": ({}, """
        export default async function handler(input, ctx) {
          try { await ctx.span("GET /fake-request", async () => 1, { root: true }); return { refused: false }; }
          catch (e) { return { refused: true, message: String(e.message) }; }
        }"""),
    "chatty": ({}, """
        export default async function handler(input) {
          for (let i = 0; i < input.lines; i++) console.log("line " + i + " " + "x".repeat(input.size ?? 10));
          return { ok: true };
        }"""),
    "lingers": ({"timeout_ms": 1500}, """
        export default async function handler(input) {
          if (input.quick) return { ok: true };
          setTimeout(() => { while (true) {} }, 10);
          return { returned: true };
        }"""),
    "short_timer": ({}, """
        let fired = 0;
        export default async function handler() {
          setTimeout(() => { fired += 1; }, 20);
          return { fired };
        }"""),
    "guarded": ({"auth": "api_key"}, """
        export default async function handler(input) { return { inside: true, input }; }"""),
    "internal_guarded": ({"auth": "api_key", "internal": True}, """
        export default async function handler(input, ctx) { return { inside: true, auth: ctx.auth.type }; }"""),
    "typed": ({"input_schema": {"type": "object", "required": ["qty"],
                                "properties": {"qty": {"type": "integer", "minimum": 1}}}}, """
        export default async function handler(input) { return input; }"""),
    "caller": ({"invokes": ["guarded", "internal_guarded", "typed"]}, """
        export default async function handler(input, ctx) {
          try { return { value: await ctx.function.invoke(input.target, input.payload ?? {}) }; }
          catch (e) { return { status: e.status, code: e.code, message: e.message }; }
        }"""),
    "throws_secret": ({"secrets": ["STRIPE_KEY"]}, """
        export default async function handler(input, ctx) {
          throw new Error("charge failed for " + await ctx.secrets.get("STRIPE_KEY"));
        }"""),
    "surrogate": ({}, """
        export default async function handler(input, ctx) {
          console.log("bad \\ud800 string");
          await ctx.span("span \\udfff name", async () => 1);
          return { ok: true };
        }"""),
    "other_fn": ({}, """export default async () => "other function's source";"""),
}


def write_project(root: Path) -> Path:
    return write_runtime_project(root, {"name": "sec", "auth": {"jwt": {"secret_name": "JWT_SECRET"}}}, FUNCTIONS)


class Harness(RuntimeHarness):
    def __init__(self, root: Path) -> None:
        super().__init__(root, secrets={"STRIPE_KEY": SECRET, "JWT_SECRET": JWT_SECRET})

    def call(self, name: str, body: object = None) -> HttpResponse:
        request = HttpRequest("POST", f"/{name}", headers=(("content-type", "application/json"),),
                              body=json.dumps(body or {}).encode())
        return self.run(self.stack.gateway.handle(request))

    def invoke(self, name: str, payload: Any = None, trace: str = "c" * 32) -> Any:
        call = CallContext(trace, None, "", trace, self.memory, {"type": "none"})
        return self.run(self.stack.runtime.invoke(name, payload or {}, call))

    def trace(self, trace_id: str) -> tuple[list[Span], list]:
        return ([s for s in self.memory.spans if s.trace_id == trace_id],
                [r for r in self.memory.logs if r.trace_id == trace_id])


@pytest.fixture(scope="module")
def h(tmp_path_factory: pytest.TempPathFactory):
    harness = Harness(write_project(tmp_path_factory.mktemp("sec")))
    yield harness
    harness.close()


# 1. Links -------------------------------------------------------------------------------------------------

def test_a_symlink_out_of_a_function_folder_is_refused_at_load(tmp_path: Path) -> None:
    root = write_project(tmp_path)
    (root / "functions" / "peek" / "root").symlink_to("/")
    with pytest.raises(ManifestError) as caught:
        load_project(root)
    assert "functions/peek/root: symbolic link to /" in str(caught.value)


def test_a_hard_link_to_project_state_is_refused_at_load(tmp_path: Path) -> None:
    root = write_project(tmp_path)
    (root / ".flux").mkdir()
    (root / ".flux" / "secrets.db").write_text("secret")
    os.link(root / ".flux" / "secrets.db", root / "functions" / "peek" / "data.db")
    with pytest.raises(ManifestError, match=r"functions/peek/data\.db: hard link"):
        load_project(root)


def test_a_link_inside_the_function_folder_is_accepted(tmp_path: Path) -> None:
    root = write_project(tmp_path)
    (root / "functions" / "peek" / "alias.ts").symlink_to("index.ts")
    assert "peek" in load_project(root).functions


@pytest.mark.skipif(isolation() != "namespace", reason="needs user + mount namespaces")
def test_project_state_and_other_functions_are_unreadable_at_the_os_level(h: Harness) -> None:
    """A link made after the worker started passes Deno's path check; the mount namespace still hides the target."""
    folder = h.stack.project.root / "functions" / "peek"
    state = folder / "state"
    other = folder / "other"
    state.symlink_to(h.stack.project.root / ".flux")
    other.symlink_to(h.stack.project.root / "functions" / "other_fn")
    try:
        assert h.call("peek", {"path": "./index.ts"}).json()["text"].startswith("\n        export default")
        assert h.call("peek", {"path": "./state/secrets.db"}).json() == {"error": "NotFound"}
        assert h.call("peek", {"path": "./other/index.ts"}).json() == {"error": "NotFound"}
    finally:
        state.unlink()
        other.unlink()


@pytest.mark.skipif(isolation() != "namespace", reason="needs user + mount namespaces")
def test_the_deno_cache_stays_shared_under_the_state_cover(h: Harness) -> None:
    """The worker's Deno cache lives in .flux/deno: it is bound back over the cover, so workers reuse it."""
    assert h.call("peek", {"path": "./index.ts"}).status == 200
    cached = {p.name for p in (h.stack.project.root / ".flux" / "deno").iterdir()}
    assert "dep_analysis_cache_v2" in cached


# 2. Secrets per function -----------------------------------------------------------------------------------

def test_an_undeclared_secret_is_refused_naming_the_declaration(h: Harness) -> None:
    response = h.call("steals_jwt")
    assert response.status == 403
    body = response.json()
    assert body["error"] == "secret_not_declared"
    assert '"secrets": ["JWT_SECRET"]' in body["message"] and "functions/steals_jwt/flux.json" in body["message"]
    assert JWT_SECRET not in response.body.decode()


def test_a_declared_secret_is_readable(h: Harness) -> None:
    response = h.call("declares")
    assert response.status == 200 and response.json() == {"length": len(SECRET)}


# 3. Imports ------------------------------------------------------------------------------------------------

def test_remote_imports_are_denied_without_allow_net(h: Harness) -> None:
    body = h.call("imports").json()
    assert body["state"] != "granted"
    assert "Requires import access" in body["error"]


# 4. Protocol -----------------------------------------------------------------------------------------------

def test_user_code_cannot_forge_frames_whatever_it_patches(h: Harness) -> None:
    response = h.call("forger")
    assert response.status == 200
    assert response.json() == {"genuine": True, "sawNonce": False}
    trace_id = response.header("x-request-id")
    spans, logs = h.trace(trace_id)
    assert not [s for s in h.memory.spans if s.name == "GET /fake"]
    assert [s.kind for s in spans if s.parent_span_id is None] == ["gateway"]
    # What it wrote to stdout is kept, as stray output, never as a protocol message.
    assert all(r.fields.get("stream") == "stray" for r in logs if "forged" in r.message)
    assert not [r for r in logs if r.message == "forged log"]


def test_ctx_span_cannot_create_a_request_row(h: Harness) -> None:
    body = h.call("fake_root").json()
    assert body["refused"] is True and "root" in body["message"]
    assert not [s for s in h.memory.spans if s.name == "GET /fake-request"]


def _fake_worker(tmp_path: Path, frames: list[str]) -> DenoWorker:
    """A stand-in for the bootstrap that writes the given frames to its channel (as a bug or attack would)."""
    script = (
        "import sys, os\n"
        "ch = open(sys.argv[1], 'w')\n"
        "sys.stdin.readline()\n"  # the host's hello
        "ch.write('{\"t\":\"ready\",\"error\":null}\\n'); ch.flush()\n"
        "for line in sys.stdin:\n"
        f"    for frame in {frames!r}:\n"
        "        ch.write(frame + '\\n'); ch.flush()\n"
    )
    channel = tmp_path / "fake.fifo"
    return DenoWorker(WorkerCommand([sys.executable, "-c", script, str(channel)], dict(os.environ), str(tmp_path),
                                    1 << 34, channel), name="fake")


def test_a_malformed_frame_fails_the_invocation_cleanly_not_the_reader(tmp_path: Path) -> None:
    async def scenario() -> tuple[str, bool]:
        worker = _fake_worker(tmp_path, ['{"t":"log","inv":1,"span":"","ts_us":"x","level":"info","message":"m"}',
                                         '{"t":"done","id":1,"ok":true,"value":"late"}'])
        await worker.start(timeout_s=10)
        invocation = Invocation(id=worker.next_invocation_id(), on_call=None, on_log=lambda f: None,  # type: ignore[arg-type]
                                on_span=lambda f: None)
        try:
            await worker.invoke({}, {}, invocation, timeout_s=5)
        except RuntimeCrashed as exc:
            return exc.message, worker._readers[0].done() and not worker._readers[0].cancelled() \
                and worker._readers[0].exception() is not None
        finally:
            await worker.kill()
        return "no error", False

    message, reader_died = asyncio.run(scenario())
    assert "malformed log frame" in message and "ts_us" in message
    assert not reader_died


# 5. Redaction ----------------------------------------------------------------------------------------------

def test_secret_values_are_redacted_from_field_keys_span_names_and_attrs(h: Harness) -> None:
    response = h.call("declares")
    spans, logs = h.trace(response.header("x-request-id"))
    text = json.dumps([s.to_dict() for s in spans] + [r.to_dict() for r in logs])
    assert SECRET not in text
    assert "charge with [redacted]" in [s.name for s in spans]
    log = next(r for r in logs if r.message == "using key")
    assert log.fields == {"[redacted]": "[redacted]", "nested": {"key": "[redacted]"}}


def test_a_thrown_error_carrying_a_secret_is_redacted_before_it_travels(h: Harness) -> None:
    with pytest.raises(FluxError) as caught:
        h.invoke("throws_secret", trace="d" * 32)
    assert SECRET not in caught.value.message and "[redacted]" in caught.value.message
    assert SECRET not in json.dumps(caught.value.details)


class EchoingDb:
    """Like Postgres: the error detail echoes the row value, and the engine records it on its db span."""

    async def query(self, query: Any, call: CallContext) -> dict[str, Any]:
        value = query["data"]["card"]
        call.sink.write_spans([Span(call.trace_id, "0123456789abcdef", call.parent_span_id, "db", "insert cards",
                                    1, 1, "error", {"error.message": f'Key (card)=({value}) already exists.'})])
        raise FluxError(f"duplicate key: ({value})")

    async def batch(self, queries: Any, call: CallContext) -> list[dict[str, Any]]:
        raise NotImplementedError


def test_db_span_errors_are_redacted(tmp_path: Path) -> None:
    (tmp_path / "flux.json").write_text(json.dumps({"name": "dbred", "secrets": ["CARD"]}))
    (tmp_path / "functions" / "store").mkdir(parents=True)
    (tmp_path / "functions" / "store" / "index.ts").write_text("""
        export default async function handler(input, ctx) {
          const card = await ctx.secrets.get("CARD");
          try { await ctx.db.query({ table: "cards", operation: "insert", data: { card } }); } catch (e) { return e.message; }
        }""")
    sink = MemorySink()

    async def scenario() -> Any:
        runtime = Runtime(load_project(tmp_path), options=RuntimeOptions(state_dir=tmp_path / ".flux"),
                          services=Services(db=EchoingDb(), secrets=MemorySecretsStore({"CARD": "4111111111111111"})))
        await runtime.start()
        try:
            return await runtime.invoke("store", {}, CallContext("e" * 32, None, "", "e" * 32, sink))
        finally:
            await runtime.close()

    asyncio.run(scenario())
    db = next(s for s in sink.spans if s.kind == "db")
    assert db.attrs["error.message"] == "Key (card)=([redacted]) already exists."


# 6. Storage ------------------------------------------------------------------------------------------------

def test_lone_surrogates_reach_storage_cleaned(h: Harness) -> None:
    response = h.call("surrogate")
    assert response.status == 200
    spans, logs = h.trace(response.header("x-request-id"))
    assert any(r.message.startswith("bad \ufffd string") for r in logs)
    assert "span \ufffd name" in [s.name for s in spans]


# 9. Caps ---------------------------------------------------------------------------------------------------

def test_a_request_logs_at_most_its_cap_with_a_visible_marker(h: Harness) -> None:
    response = h.call("chatty", {"lines": MAX_LOG_LINES + 500})
    assert response.status == 200
    spans, logs = h.trace(response.header("x-request-id"))
    assert len([r for r in logs if r.message.startswith("line ")]) == MAX_LOG_LINES
    assert any(r.message.startswith("[truncated]") for r in logs)
    function = next(s for s in spans if s.kind == "function")
    assert function.attrs["logs.dropped"] == 500


def test_a_huge_log_line_is_cut_in_the_worker(h: Harness) -> None:
    response = h.call("chatty", {"lines": 1, "size": 5 * 1024 * 1024})
    _, logs = h.trace(response.header("x-request-id"))
    line = next(r for r in logs if r.message.startswith("line 0"))
    assert len(line.message) < 20_000 and "truncated" in line.message


# 10. Post-return work --------------------------------------------------------------------------------------

def test_work_after_return_recycles_the_worker_and_the_next_caller_is_served(h: Harness) -> None:
    first = h.call("lingers")
    assert first.status == 200
    h.run(asyncio.sleep(0.5))  # the host's event loop runs only inside h.run
    started = time.monotonic()
    second = h.call("lingers", {"quick": True})
    assert second.status == 200, second.body
    assert time.monotonic() - started < 1.2
    spans, logs = h.trace(first.header("x-request-id"))
    assert any(s.name == "post-return work (worker recycled)" for s in spans)
    assert any("worker recycled" in r.message for r in logs)


def test_a_short_timer_after_return_settles_and_the_worker_is_kept(h: Harness) -> None:
    h.call("short_timer")
    h.run(asyncio.sleep(0.3))
    assert h.call("short_timer").json() == {"fired": 1}


# 12. ctx.function.invoke -----------------------------------------------------------------------------------

def test_an_anonymous_caller_cannot_invoke_an_api_key_function(h: Harness) -> None:
    body = h.call("caller", {"target": "guarded"}).json()
    assert (body["status"], body["code"]) == (401, "unauthorized")


def test_an_internal_function_is_invokable_and_has_no_public_route(h: Harness) -> None:
    body = h.call("caller", {"target": "internal_guarded"}).json()
    assert body == {"value": {"inside": True, "auth": "none"}}
    assert h.call("internal_guarded").status == 404


def test_invoke_applies_the_callees_input_schema(h: Harness) -> None:
    body = h.call("caller", {"target": "typed", "payload": {"qty": 0}}).json()
    assert (body["status"], body["code"]) == (400, "validation_failed")
    assert h.call("caller", {"target": "typed", "payload": {"qty": 2}}).json() == {"value": {"qty": 2}}
