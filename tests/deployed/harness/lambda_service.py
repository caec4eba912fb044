"""Lambda for the emulated stack: execution environments per function, and the Invoke API.

Modelled on the Lambda execution environment lifecycle (Developer Guide, "Lambda
execution environment"): an environment is created on demand (a cold start), runs the
INIT phase (the runtime imports the handler, then polls ``/invocation/next``), then
serves one event at a time; after an event it is kept warm and reused; a timeout, a
crash or an INIT failure discards it, and the next event gets a fresh one. With
extensions registered (Extensions API, :mod:`runtime_api`), an invoke's response goes
back to the caller as soon as the runtime posts it, but the environment takes its next
event only once every extension has called Next too (the Invoke phase, bounded by the
function's timeout; an extension still busy at the deadline, or one that reported an
exit error, gets the environment discarded). Up to
``ReservedConcurrentExecutions`` environments run at once (over it: 429
``TooManyRequestsException``).

The environment each function sees is the template's ``Environment.Variables`` (Refs
resolved to the emulated resources; reserved keys and more than 4 KB refused, as Lambda
refuses them) plus the variables the ``python3.12`` runtime sets, with
``AWS_ENDPOINT_URL`` pointing the SDK at the moto server and ``AWS_ENDPOINT_URL_LAMBDA``
at :class:`InvokeApi` (moto's own Lambda cannot run these functions).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from tests.deployed.harness.aws_services import CREDENTIALS
from tests.deployed.harness.runtime_api import QuietServer, RuntimeApi
from tests.deployed.harness.runtime_image import RuntimeImage
from tests.deployed.harness.sandbox import Mounts, Sandbox
from tests.deployed.harness.template import Stack

INIT_LIMIT_S = 10.0  # the on-demand INIT phase limit
ENV_LIMIT_BYTES = 4096
RESERVED = {"_HANDLER", "_X_AMZN_TRACE_ID", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_EXECUTION_ENV",
            "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_VERSION",
            "AWS_LAMBDA_INITIALIZATION_TYPE", "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME",
            "AWS_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
            "AWS_LAMBDA_RUNTIME_API", "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR"}


class LambdaError(Exception):
    """An Invoke API error (not a function error): the HTTP status and AWS error type travel with it."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error_type, self.message = status, error_type, message


@dataclass(frozen=True)
class FunctionSpec:
    logical_id: str
    name: str
    arn: str
    handler: str
    memory_mb: int
    timeout_s: int
    code: Path
    layers: tuple[Path, ...]
    variables: dict[str, Any]          # unresolved template values
    log_format: str | None
    reserved_concurrency: int | None
    tmp_mb: int


@dataclass
class InvokeResult:
    payload: bytes
    function_error: str | None = None   # "Unhandled" as the Invoke API reports it
    cold: bool = False
    init_ms: float = 0.0
    duration_ms: float = 0.0
    cold_start_ms: float = 0.0          # environment start → response, cold invokes only
    waited_ms: float = 0.0              # for the previous invoke's extensions to call Next
    invocation: Any = None              # the runtime_api.Invocation (its post-runtime time is known later)

    @property
    def post_runtime_ms(self) -> float:
        """Extension time after the runtime's Next (0 until the Invoke phase is over)."""
        return self.invocation.post_runtime_ms if self.invocation is not None else 0.0

    def json(self) -> Any:
        return json.loads(self.payload or b"null")


@dataclass
class Metrics:
    cold_start_ms: list[float] = field(default_factory=list)
    init_ms: list[float] = field(default_factory=list)
    warm_ms: list[float] = field(default_factory=list)
    results: list[InvokeResult] = field(default_factory=list)  # every invoke, in order (scenarios read durations)


def function_specs(stack: Stack) -> dict[str, FunctionSpec]:
    """Every ``AWS::Lambda::Function`` of the template, with names and ARNs registered on the stack."""
    for logical_id, layer in stack.of_type("AWS::Lambda::LayerVersion").items():
        name = layer.get("Properties", {}).get("LayerName") or stack.generated_name(logical_id, max_length=64)
        stack.set(logical_id, Ref=stack.arn("lambda", f"layer:{name}:1"), _path=stack.asset_path(
            layer["Properties"]["Content"]))
    specs: dict[str, FunctionSpec] = {}
    for logical_id, resource in stack.of_type("AWS::Lambda::Function").items():
        props = resource["Properties"]
        if props.get("Runtime") != "python3.12":
            raise ValueError(f"{logical_id}: runtime {props.get('Runtime')!r}; the tier emulates python3.12 only")
        name = props.get("FunctionName") or stack.generated_name(logical_id, max_length=64)
        arn = stack.arn("lambda", f"function:{name}")
        stack.set(logical_id, Ref=name, Arn=arn)
        layers = tuple(stack.attr(layer["Ref"], "_path") for layer in props.get("Layers", []))
        specs[name] = FunctionSpec(
            logical_id=logical_id, name=name, arn=arn, handler=props["Handler"],
            memory_mb=int(props.get("MemorySize", 128)), timeout_s=int(props.get("Timeout", 3)),
            code=stack.asset_path(props["Code"]), layers=layers,
            variables=props.get("Environment", {}).get("Variables", {}),
            log_format=props.get("LoggingConfig", {}).get("LogFormat"),
            reserved_concurrency=props.get("ReservedConcurrentExecutions"),
            tmp_mb=int(props.get("EphemeralStorage", {}).get("Size", 512)))
    return specs


def merged_layers(layers: tuple[Path, ...], workdir: Path) -> Path | None:
    """Layers extracted into one ``/opt`` in order, a later layer's files winning (as Lambda merges them)."""
    if not layers:
        return None
    if len(layers) == 1:
        return layers[0]
    import shutil

    target = workdir / ("opt-" + "-".join(p.name[-8:] for p in layers))
    if not target.exists():
        for layer in layers:
            shutil.copytree(layer, target, dirs_exist_ok=True, symlinks=True)
    return target


class ExecutionEnvironment:
    """One sandbox and its Runtime API; serves one event at a time."""

    def __init__(self, spec: FunctionSpec, env: dict[str, str], mounts: Mounts, log_path: Path) -> None:
        self.spec = spec
        self.api = RuntimeApi(spec.arn, spec.handler)
        self.phase_deadline = 0.0  # time.monotonic() by which the current Invoke phase must end
        self.last: Any = None      # the last runtime_api.Invocation
        self.started = time.perf_counter()
        self.sandbox = Sandbox(mounts, {**env, "AWS_LAMBDA_RUNTIME_API": self.api.address},
                               memory_mb=spec.memory_mb, log_path=log_path)
        self.initialised = False
        self.init_ms = 0.0
        self.log_path = log_path

    def wait_init(self, limit_s: float) -> dict | None:
        """None once the runtime polls for its first event; the init error document otherwise."""
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            if self.api.init_error_event.is_set():
                return self.api.init_error
            if self.api.init_done.wait(0.02):
                self.initialised = True
                self.init_ms = (time.perf_counter() - self.started) * 1000
                return None
            if not self.sandbox.alive():
                return {"errorType": "Runtime.ExitError",
                        "errorMessage": f"Runtime exited with error: exit status {self.sandbox.process.returncode}"}
        return {"errorType": "Sandbox.Timedout", "errorMessage": f"INIT did not finish in {limit_s:.0f} seconds"}

    def settle(self) -> bool:
        """Wait for the previous Invoke phase to end (its extensions in Next); False: discard the environment."""
        remaining = self.phase_deadline - time.monotonic()
        return self.api.wait_idle(max(0.0, remaining)) and not self.api.extension_failed.is_set()

    def invoke(self, payload: bytes, timeout_s: float) -> tuple[bytes, str | None, bool]:
        """(payload, function error, environment still usable)."""
        invocation = self.api.submit(payload, timeout_s=timeout_s)
        self.last = invocation
        deadline = time.monotonic() + timeout_s
        self.phase_deadline = deadline
        while not invocation.done.wait(0.02):
            if not self.sandbox.alive():
                error = {"errorType": "Runtime.ExitError",
                         "errorMessage": f"RequestId: {invocation.request_id} Error: Runtime exited with error: "
                                         f"exit status {self.sandbox.process.returncode}"}
                return json.dumps(error).encode(), "Unhandled", False
            if time.monotonic() > deadline:
                stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
                error = {"errorMessage": f"{stamp} {invocation.request_id} Task timed out after "
                                         f"{timeout_s:.2f} seconds"}
                return json.dumps(error).encode(), "Unhandled", False
        if invocation.error is not None:
            return json.dumps(invocation.error).encode(), "Unhandled", self.sandbox.alive()
        return invocation.response or b"", None, True

    def close(self) -> None:
        self.sandbox.kill()
        self.api.close()


class LambdaService:
    """The functions of one stack and their pools of execution environments."""

    def __init__(self, stack: Stack, specs: dict[str, FunctionSpec], image: RuntimeImage, workdir: Path, *,
                 endpoints: dict[str, str]) -> None:
        self.stack, self.specs, self.image, self.workdir = stack, specs, image, workdir
        self.endpoints = endpoints  # AWS_ENDPOINT_URL and friends
        self._idle: dict[str, list[ExecutionEnvironment]] = {name: [] for name in specs}
        self._busy: dict[str, int] = dict.fromkeys(specs, 0)
        self._all: list[ExecutionEnvironment] = []
        self._lock = threading.Lock()
        self.metrics: dict[str, Metrics] = {name: Metrics() for name in specs}
        self.memory_enforced: bool | None = None
        self.invocations: dict[str, int] = dict.fromkeys(specs, 0)
        self.scenarios: dict[str, Any] = {}  # figures scenarios measure themselves, written to the metrics report
        (workdir / "logs").mkdir(parents=True, exist_ok=True)

    def find(self, name_or_arn: str) -> FunctionSpec:
        name = name_or_arn.split(":function:")[-1].split(":")[0]
        if name in self.specs:
            return self.specs[name]
        for spec in self.specs.values():
            if spec.logical_id == name:
                return spec
        raise LambdaError(404, "ResourceNotFoundException", f"Function not found: {self.stack.arn('lambda', 'function:' + name)}")

    def environment(self, spec: FunctionSpec) -> dict[str, str]:
        variables = {key: str(value) for key, value in self.stack.resolve(spec.variables).items()}
        reserved = sorted(set(variables) & RESERVED)
        if reserved:
            raise LambdaError(400, "InvalidParameterValueException",
                              f"Lambda was unable to configure your environment variables because the environment "
                              f"variables you have provided contains reserved keys that are currently not supported "
                              f"for modification. Reserved keys used in this request: {', '.join(reserved)}")
        size = len(json.dumps(variables, separators=(",", ":")).encode())
        if size > ENV_LIMIT_BYTES:
            raise LambdaError(400, "InvalidParameterValueException",
                              f"Lambda was unable to configure your environment variables because the environment "
                              f"variables you have provided exceeded the 4KB limit. String measured: {size} bytes")
        log_group = f"/aws/lambda/{spec.name}"
        env = {
            **variables,
            "_HANDLER": spec.handler, "AWS_REGION": self.stack.region, "AWS_DEFAULT_REGION": self.stack.region,
            "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12", "AWS_LAMBDA_FUNCTION_NAME": spec.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb), "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand", "AWS_LAMBDA_LOG_GROUP_NAME": log_group,
            "AWS_LAMBDA_LOG_STREAM_NAME": time.strftime("%Y/%m/%d/[$LATEST]") + spec.logical_id[-12:].lower(),
            **CREDENTIALS, "LAMBDA_TASK_ROOT": "/var/task", "LAMBDA_RUNTIME_DIR": "/var/runtime",
            "LANG": "en_US.UTF-8", "TZ": ":UTC", "PYTHONPATH": "/var/runtime",
            "PATH": "/var/lang/bin:/usr/local/bin:/usr/bin/:/bin:/opt/bin",
            "LD_LIBRARY_PATH": "/var/lang/lib:/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:"
                               "/var/task/lib:/opt/lib",
            **self.endpoints,
        }
        if spec.log_format:
            env["AWS_LAMBDA_LOG_FORMAT"] = spec.log_format.upper()
        return env

    def _start(self, spec: FunctionSpec) -> ExecutionEnvironment:
        mounts = Mounts(task=spec.code, opt=merged_layers(spec.layers, self.workdir), lang=self.image.lang,
                        runtime=self.image.runtime, tmp_mb=spec.tmp_mb)
        env = ExecutionEnvironment(spec, self.environment(spec), mounts,
                                   self.workdir / "logs" / f"{spec.name}.log")
        with self._lock:
            self._all.append(env)
            self.memory_enforced = env.sandbox.memory_enforced
        return env

    def _discard(self, env: ExecutionEnvironment) -> None:
        env.close()
        with self._lock:
            if env in self._all:
                self._all.remove(env)

    def invoke(self, name_or_arn: str, payload: bytes, *, fresh: bool = False) -> InvokeResult:
        """Synchronous invoke (RequestResponse). ``fresh`` forces a cold environment."""
        spec = self.find(name_or_arn)
        with self._lock:
            limit = spec.reserved_concurrency
            if limit is not None and self._busy[spec.name] >= limit:
                raise LambdaError(429, "TooManyRequestsException", "Rate Exceeded.")
            env = None if fresh or not self._idle[spec.name] else self._idle[spec.name].pop()
            self._busy[spec.name] += 1
            self.invocations[spec.name] += 1
        try:
            waited = time.perf_counter()
            if env is not None and not env.settle():
                self._discard(env)  # its extensions overran the previous invoke's timeout, or failed
                env = None
            waited_ms = (time.perf_counter() - waited) * 1000 if env is not None else 0.0
            cold = env is None
            if env is None:
                env = self._start(spec)
                error = env.wait_init(max(INIT_LIMIT_S, spec.timeout_s))
                if error is not None:
                    self._discard(env)
                    return InvokeResult(json.dumps(error).encode(), "Unhandled", cold=True)
            began = time.perf_counter()
            body, function_error, reusable = env.invoke(payload, spec.timeout_s)
            ended = time.perf_counter()
            result = InvokeResult(body, function_error, cold=cold, init_ms=env.init_ms if cold else 0.0,
                                  duration_ms=(ended - began) * 1000,
                                  cold_start_ms=(ended - env.started) * 1000 if cold else 0.0,
                                  waited_ms=waited_ms, invocation=env.last)
            metrics = self.metrics[spec.name]
            metrics.results.append(result)
            if cold:
                metrics.cold_start_ms.append(result.cold_start_ms)
                metrics.init_ms.append(result.init_ms)
            else:
                metrics.warm_ms.append(result.duration_ms)
            if reusable:
                with self._lock:
                    self._idle[spec.name].append(env)
            else:
                self._discard(env)
            return result
        finally:
            with self._lock:
                self._busy[spec.name] -= 1

    def invoke_async(self, name_or_arn: str, payload: bytes) -> None:
        """``InvocationType=Event``: queued and run in the background (errors are not retried here)."""
        self.find(name_or_arn)
        threading.Thread(target=self.invoke, args=(name_or_arn, payload), daemon=True).start()

    def environments(self, name: str) -> list[ExecutionEnvironment]:
        """The live execution environments of a function (idle or busy)."""
        spec = self.find(name)
        with self._lock:
            return [env for env in self._all if env.spec.name == spec.name]

    def warm_count(self, name: str) -> int:
        with self._lock:
            return len(self._idle[self.find(name).name])

    def discard_warm(self, name: str | None = None) -> None:
        """Forget warm environments (what Lambda does after idling, or after a configuration change)."""
        with self._lock:
            names = [self.find(name).name] if name else list(self._idle)
            victims = [env for n in names for env in self._idle[n]]
            for n in names:
                self._idle[n] = []
        for env in victims:
            self._discard(env)

    def close(self) -> None:
        """Discard every environment, in parallel (each waits for its PID namespace to empty)."""
        import concurrent.futures

        with self._lock:
            victims = list(self._all)
            self._all.clear()
            for name in self._idle:
                self._idle[name] = []

        def discard(env: ExecutionEnvironment) -> None:
            with contextlib.suppress(Exception):
                env.close()

        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(discard, victims))


class CloudFormationStacks:
    """``DescribeStacks`` (query protocol) for the deployed stack, so the CLI finds its outputs as in AWS.

    moto's CloudFormation would try to create the template's resources itself; only the
    read the CLI makes is needed: ``StackStatus`` ``CREATE_COMPLETE`` and the ``Outputs``.
    """

    def __init__(self, name: str, outputs: dict[str, str]) -> None:
        self.name, self.outputs = name, outputs

    def answer(self, payload: bytes) -> tuple[int, bytes]:
        from urllib.parse import parse_qs
        from xml.sax.saxutils import escape

        form = {k: v[0] for k, v in parse_qs(payload.decode()).items()}
        namespace = "http://cloudformation.amazonaws.com/doc/2010-05-15/"
        if form.get("Action") != "DescribeStacks" or form.get("StackName", self.name) != self.name:
            message = f"Stack with id {form.get('StackName', '')} does not exist"
            return 400, (f'<ErrorResponse xmlns="{namespace}"><Error><Type>Sender</Type><Code>ValidationError</Code>'
                         f"<Message>{escape(message)}</Message></Error><RequestId>0</RequestId>"
                         "</ErrorResponse>").encode()
        outputs = "".join(f"<member><OutputKey>{escape(k)}</OutputKey><OutputValue>{escape(v)}</OutputValue></member>"
                          for k, v in self.outputs.items())
        return 200, (f'<DescribeStacksResponse xmlns="{namespace}"><DescribeStacksResult><Stacks><member>'
                     f"<StackName>{escape(self.name)}</StackName><StackId>arn:aws:cloudformation:us-east-1:"
                     f"123456789012:stack/{escape(self.name)}/0</StackId><StackStatus>CREATE_COMPLETE</StackStatus>"
                     f"<CreationTime>2026-01-01T00:00:00Z</CreationTime><Outputs>{outputs}</Outputs></member>"
                     "</Stacks></DescribeStacksResult><ResponseMetadata><RequestId>0</RequestId>"
                     "</ResponseMetadata></DescribeStacksResponse>").encode()


class InvokeApi:
    """``POST /2015-03-31/functions/{name}/invocations`` for the SDKs in the emulated functions (and the CLI)."""

    def __init__(self, service: LambdaService, stacks: CloudFormationStacks | None = None) -> None:
        self.service = service
        self.stacks = stacks
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # as AWS's endpoints: no delayed-ACK stall between headers and body

            def log_message(self, format: str, *args: object) -> None:
                return

            def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for key, value in {"Content-Type": "application/json", "Content-Length": str(len(body)),
                                   **headers}.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                payload = self.rfile.read(length) if length else b""
                if self.path.split("?")[0] == "/" and outer.stacks is not None:
                    status, body = outer.stacks.answer(payload)
                    self._send(status, body, {"Content-Type": "text/xml"})
                    return
                parts = self.path.split("?")[0].split("/")
                if len(parts) != 5 or parts[1] != "2015-03-31" or parts[2] != "functions" or parts[4] != "invocations":
                    self._send(404, b'{"message":"Not Found"}', {"x-amzn-ErrorType": "UnknownOperationException"})
                    return
                name = unquote(parts[3])
                kind = self.headers.get("X-Amz-Invocation-Type") or "RequestResponse"
                try:
                    if kind == "DryRun":
                        service.find(name)
                        self._send(204, b"", {})
                    elif kind == "Event":
                        service.invoke_async(name, payload)
                        self._send(202, b"", {})
                    else:
                        result = service.invoke(name, payload)
                        headers = {"X-Amz-Executed-Version": "$LATEST"}
                        if result.function_error:
                            headers["X-Amz-Function-Error"] = result.function_error
                        self._send(200, result.payload, headers)
                except LambdaError as exc:
                    body = json.dumps({"Type": "User", "message": exc.message}).encode()
                    self._send(exc.status, body, {"x-amzn-ErrorType": exc.error_type})

        self._server = QuietServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, name="lambda-invoke-api", daemon=True).start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
