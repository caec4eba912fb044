"""flux.json models: the project file and one file per function (DESIGN §4).

Loading is strict: an unknown key, a wrong type, a duplicate method+route or a
function folder without ``index.ts`` is a :class:`ManifestError` whose message
names the file and the field, reported before anything starts.
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from functions.shared.errors import FluxError
from functions.shared.links import function_read_roots, link_problems
from functions.shared.manifest_bundle import (
    DatabaseRules,
    FunctionSpecRules,
    ProjectConfigRules,
    ProjectRules,
)
from functions.shared.netdeny import DENIED_NAMES, is_denied
from functions.shared.secrets import SECRET_NAME

AuthMode = Literal["none", "api_key", "jwt"]
HttpMethod = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]

_SEGMENT = r"(?:[A-Za-z0-9._~-]+|\{[A-Za-z_][A-Za-z0-9_]*\})"
_ROUTE = re.compile(rf"^/$|^(?:/{_SEGMENT})+$")
_FUNCTION_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
# Reserved concurrency in AWS and the most Deno workers locally, per function (flux.json "concurrency").
DEFAULT_CONCURRENCY = 10
MAX_CONCURRENCY = 1000  # SQS event sources cannot run more batches at once, nor does a default account allow more
MIN_ASYNC_CONCURRENCY = 2  # an SQS event source's maximum concurrency is at least 2
_HOST = re.compile(r"^(?:(?:\*\.)?[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$")


def _ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a host string denotes, including short and hex IPv4 forms (``127.1``, ``0x7f000001``)."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    if re.fullmatch(r"[0-9a-fA-Fx.]+", host) and not re.search(r"[a-wyzA-WYZ]", host.replace("0x", "")):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


class ManifestError(FluxError):
    """A flux.json file is invalid; the message names the file and the field."""

    status, code = 400, "invalid_manifest"

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


# defer_build: a model's validator is built on its first validation, not when the class is defined, so a
# process that imports these models without validating a flux.json does not build them. (A Lambda does not
# import this module at all: it reads the packaged manifest with functions/shared/manifest_bundle.py.)
class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, defer_build=True)


class RateLimit(_Model):
    requests: int = Field(100, ge=1, le=1_000_000)
    per_seconds: int = Field(60, ge=1, le=86_400)
    burst: int | None = Field(None, ge=1, le=1_000_000)


class Retry(_Model):
    max_attempts: int = Field(3, ge=1, le=100)
    backoff: Literal["exponential", "linear", "fixed"] = "exponential"
    base_ms: int = Field(1000, ge=0, le=3_600_000)


class Ordering(_Model):
    group_by: str = Field(min_length=1, max_length=128)


class AuthSetting(_Model):
    """The object form of a function's ``auth``: ``{"mode": "jwt", "optional": true}``.

    Optional: an anonymous caller is let in with ``ctx.auth.type == "none"``; a
    credential that is sent but not valid is still 401.
    """

    mode: AuthMode
    optional: bool = False

    @model_validator(mode="after")
    def _optional_needs_a_mode(self) -> AuthSetting:
        if self.optional and self.mode == "none":
            raise ValueError("'optional' applies to \"api_key\" and \"jwt\" only")
        return self


class FunctionConfig(_Model):
    """One function's flux.json; ``name`` and ``directory`` are filled in by the loader."""

    route: str | None = None
    method: HttpMethod = "POST"
    async_: bool = Field(False, alias="async")
    auth: AuthMode | AuthSetting | None = None
    rate_limit: RateLimit | None = None
    timeout_ms: int = Field(10_000, ge=1, le=900_000)
    memory_mb: int = Field(256, ge=64, le=10_240)
    retry: Retry = Retry()
    ordering: Ordering | None = None
    allow_net: list[str] = Field(default_factory=list)
    input_schema: dict[str, Any] | None = None
    # Secret names ctx.secrets.get may read; None means the project's default list.
    secrets: list[str] | None = None
    # Internal functions have no public route: only ctx.function.invoke and the queue reach them.
    internal: bool = False
    # The functions ctx.queue.push may target (each async) and ctx.function.invoke may call: declared, like
    # secrets, so the stack can grant exactly those queues and secrets and the runtime can refuse the rest.
    pushes: list[str] = Field(default_factory=list)
    invokes: list[str] = Field(default_factory=list)
    concurrency: int = Field(DEFAULT_CONCURRENCY, ge=1, le=MAX_CONCURRENCY)

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=True, defer_build=True)

    @field_validator("secrets")
    @classmethod
    def _secret_names(cls, value: list[str] | None) -> list[str] | None:
        return _check_secret_names(value)

    @field_validator("pushes", "invokes")
    @classmethod
    def _function_names(cls, value: list[str]) -> list[str]:
        """Shape only; whether each name is a function of the project is checked once all are loaded."""
        for name in value:
            if not _FUNCTION_NAME.match(name):
                raise ValueError(f"{name!r} is not a function name (lowercase letters, digits, '_' and '-')")
        repeated = sorted({name for name in value if value.count(name) > 1})
        if repeated:
            raise ValueError(f"{', '.join(map(repr, repeated))} listed more than once")
        return value

    @field_validator("auth", mode="before")
    @classmethod
    def _auth_form(cls, value: Any) -> Any:
        """One clear message per bad ``auth`` (a plain union would report both of its branches)."""
        if value is None or isinstance(value, AuthSetting):
            return value
        if isinstance(value, str):
            if value not in ("none", "api_key", "jwt"):
                raise ValueError(f'{value!r} is not "none", "api_key" or "jwt"')
            return value
        if isinstance(value, dict):
            try:
                return AuthSetting.model_validate(value)
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"])
                message = "unknown key" if first["type"] == "extra_forbidden" else \
                    first["msg"].removeprefix("Value error, ")
                raise ValueError(f"{where + ': ' if where else ''}{message}") from None
        raise ValueError('must be "none", "api_key", "jwt" or {"mode": "jwt", "optional": true}')

    @field_validator("route")
    @classmethod
    def _route_shape(cls, value: str | None) -> str | None:
        if value is not None and not _ROUTE.match(value):
            raise ValueError("must start with '/' and contain only path segments or {param} segments")
        return value

    @field_validator("allow_net")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        for host in value:
            if not _HOST.match(host):
                raise ValueError(f"{host!r} is not a host name (optionally with :port)")
            if host.startswith("["):  # an IPv6 literal, [addr] or [addr]:port
                bare, _, rest = host[1:].partition("]")
                port = rest[1:] if rest.startswith(":") else None
                if _ip_literal(bare) is None:
                    raise ValueError(f"{host!r} is not an IPv6 address")
            else:
                bare, _, port = host.partition(":") if host.count(":") == 1 else (host, "", None)
            if port is not None and not 1 <= int(port) <= 65535:
                raise ValueError(f"{host!r}: the port must be from 1 to 65535")
            if bare.lower() in DENIED_NAMES:
                raise ValueError(f"{host!r}: loopback hosts are always denied")
            address = _ip_literal(bare)
            if address is None:
                continue
            if is_denied(address):
                raise ValueError(f"{host!r}: special-purpose addresses (private, loopback, link-local, "
                                 "documentation, CGNAT, benchmarking, multicast, reserved) are always denied")
        return value

    @field_validator("input_schema")
    @classmethod
    def _schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return value
        from jsonschema import Draft202012Validator
        from jsonschema.exceptions import SchemaError

        try:
            Draft202012Validator.check_schema(value)
        except SchemaError as exc:
            raise ValueError(f"not a valid JSON Schema: {exc.message}") from None
        return value

    @model_validator(mode="after")
    def _async_only(self) -> FunctionConfig:
        if self.ordering is not None and not self.async_:
            raise ValueError("'ordering' applies to async functions only (set \"async\": true)")
        if self.async_ and self.concurrency < MIN_ASYNC_CONCURRENCY:
            raise ValueError(f"'concurrency' of an async function is at least {MIN_ASYNC_CONCURRENCY} (an SQS event "
                             "source runs at least 2 batches at once; use \"ordering\" to run a group one at a time)")
        return self


class JwtConfig(_Model):
    issuer: str | None = None
    audience: str | None = None
    jwks_url: str | None = None
    secret_name: str | None = None
    algorithms: list[Literal["HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "PS256"]] = \
        Field(default_factory=lambda: ["RS256"], min_length=1)
    leeway_s: int = Field(30, ge=0, le=300)
    jwks_refresh_s: int = Field(300, ge=1, le=86_400)
    # Where clients put the token: "<header>: <scheme> <jwt>", or the bare token when the scheme is "".
    header: str = Field("authorization", pattern=r"^[A-Za-z0-9-]{1,64}$")
    scheme: str = Field("Bearer", pattern=r"^(?:[A-Za-z][A-Za-z0-9._~+/-]{0,31})?$")

    @field_validator("header")
    @classmethod
    def _lower_header(cls, value: str) -> str:
        if value.lower() == "cookie":
            raise ValueError("a JWT cannot be read from the cookie header")
        return value.lower()

    @model_validator(mode="before")
    @classmethod
    def _default_algorithms(cls, data: Any) -> Any:
        """A shared secret signs with HS256 unless told otherwise; a JWKS with RS256."""
        if isinstance(data, dict) and "algorithms" not in data and data.get("secret_name"):
            return {**data, "algorithms": ["HS256"]}
        return data

    @model_validator(mode="after")
    def _one_key_source(self) -> JwtConfig:
        if bool(self.jwks_url) == bool(self.secret_name):
            raise ValueError("set exactly one of 'jwks_url' or 'secret_name'")
        symmetric = {a for a in self.algorithms if a.startswith("HS")}
        if self.secret_name and symmetric != set(self.algorithms):
            raise ValueError("'secret_name' keys sign with HS* algorithms only")
        if self.jwks_url and symmetric:
            raise ValueError("'jwks_url' keys verify RS*/ES*/PS* algorithms only")
        return self


class ProjectAuth(_Model):
    default: AuthMode = "none"
    jwt: JwtConfig | None = None


class Cors(_Model):
    origins: list[str] = Field(default_factory=list)
    headers: list[str] = Field(default_factory=lambda: ["content-type", "authorization", "x-api-key"])
    max_age: int = Field(600, ge=0, le=86_400)


APP_ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class Database(DatabaseRules, _Model):
    url: str | None = None
    provision: bool = False
    secret_arn: str | None = None
    # The role user code connects as (DML rights only, maintained by every migrate); false: run user code
    # as the migrating user, for a database where that user may not create roles.
    app_role: str | bool = "flux_app"
    # An RDS Proxy in front of a provisioned cluster; None: the stage profile decides (on in prod, off in dev).
    proxy: bool | None = None

    @field_validator("app_role")
    @classmethod
    def _app_role(cls, value: str | bool) -> str | bool:
        if value is True:
            return "flux_app"
        if isinstance(value, str) and (not APP_ROLE_NAME.match(value) or value.startswith("pg_")):
            raise ValueError(f"{value!r} is not a role name (lower-case letters, digits and '_', at most 63, "
                             "not starting with a digit or 'pg_'), or false")
        return value


class Observability(_Model):
    slow_query_ms: int = Field(100, ge=1, le=600_000)
    n_plus_one_threshold: int = Field(5, ge=2, le=10_000)
    retention_days: int = Field(14, ge=1, le=3650)
    tracing: bool = True


class Gateway(_Model):
    # Peers (IPs or CIDRs) whose X-Forwarded-For is believed; without any, forwarding headers are ignored.
    trusted_proxies: list[str] = Field(default_factory=list)

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or CIDR") from None
        return value


def _check_secret_names(value: list[str] | None) -> list[str] | None:
    for name in value or []:
        if not SECRET_NAME.match(name):
            raise ValueError(f"{name!r} is not a secret name (letters, digits, '_', '.', '-', max 128)")
    return value


STAGE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,19}$")


class StageSettings(_Model):
    """One stage's settings: ``profile`` chooses the always-on resources (infra/profile.py says which)."""
    profile: Literal["dev", "prod"]


class Limits(_Model):
    max_body_bytes: int = Field(1_048_576, ge=1, le=10 * 1_048_576)


class ProjectConfig(ProjectConfigRules, _Model):
    name: str = Field(min_length=1, max_length=64)
    functions_dir: str = "functions"
    auth: ProjectAuth = ProjectAuth()
    cors: Cors = Cors()
    rate_limit: RateLimit | None = None
    database: Database = Database()
    observability: Observability = Observability()
    limits: Limits = Limits()
    gateway: Gateway = Gateway()
    # The secrets every function may read unless its flux.json lists its own.
    secrets: list[str] = Field(default_factory=list)
    # Per-stage settings; a stage not listed gets the profile of its name (prod for "prod", dev otherwise).
    stages: dict[str, StageSettings] = Field(default_factory=dict)

    @field_validator("stages")
    @classmethod
    def _stage_names(cls, value: dict[str, StageSettings]) -> dict[str, StageSettings]:
        for name in value:
            if not STAGE_NAME.match(name):
                raise ValueError(f"stage {name!r}: use letters, digits and '-', starting with a letter (at most 20)")
        return value

    @field_validator("secrets")
    @classmethod
    def _secret_names(cls, value: list[str]) -> list[str]:
        return _check_secret_names(value) or []

    @field_validator("auth", mode="before")
    @classmethod
    def _auth_shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"default": value}
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not re.match(r"^[A-Za-z][A-Za-z0-9-]*$", value):
            raise ValueError("use letters, digits and '-', starting with a letter")
        return value


class FunctionSpec(FunctionSpecRules, BaseModel):
    """A loaded function: its config resolved against the project defaults."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    name: str
    directory: Path
    entry: Path
    config: FunctionConfig
    route: str
    method: str
    auth: AuthMode
    rate_limit: RateLimit | None
    secrets: tuple[str, ...] = ()
    # With "auth": {"mode": ..., "optional": true}: anonymous callers get in as type "none".
    auth_optional: bool = False


class Project(ProjectRules, BaseModel):
    model_config = ConfigDict(frozen=True, defer_build=True)

    root: Path
    config: ProjectConfig
    functions: dict[str, FunctionSpec]


def _describe(exc: ValidationError, file: Path, root: Path) -> list[str]:
    shown = _relative(file, root)
    problems = []
    for error in exc.errors():
        location = ".".join(str(p) for p in error["loc"] if p != "__root__")
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        where = f"field '{location}'" if location else "top level"
        problems.append(f"{shown}: {where}: {message}")
    return problems


def _relative(file: Path, root: Path) -> str:
    try:
        return str(file.relative_to(root))
    except ValueError:
        return str(file)


def _read_json(file: Path, root: Path) -> Any:
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ManifestError([f"{_relative(file, root)}: invalid JSON at line {exc.lineno} column {exc.colno}: "
                             f"{exc.msg}"]) from None
    except UnicodeDecodeError:
        raise ManifestError([f"{_relative(file, root)}: not UTF-8 text"]) from None


def load_project(root: str | Path) -> Project:
    """Read and validate ``<root>/flux.json`` and every ``functions/*/flux.json``."""
    root = Path(root).resolve()
    project_file = root / "flux.json"
    if not project_file.is_file():
        raise ManifestError([f"{project_file}: not found (is this a Flux project? try `flux init`)"])
    raw = _read_json(project_file, root)
    if not isinstance(raw, dict):
        raise ManifestError(["flux.json: top level: must be an object"])
    try:
        project = ProjectConfig.model_validate(raw)
    except ValidationError as exc:
        raise ManifestError(_describe(exc, project_file, root)) from None

    functions_dir = root / project.functions_dir
    problems: list[str] = []
    specs: dict[str, FunctionSpec] = {}
    routes: dict[tuple[str, str], str] = {}
    folders = sorted(p for p in functions_dir.iterdir() if p.is_dir()) if functions_dir.is_dir() else []
    for folder in folders:
        if folder.name.startswith((".", "_")):
            continue
        name = folder.name
        config_file = folder / "flux.json"
        entry = folder / "index.ts"
        if not _FUNCTION_NAME.match(name):
            problems.append(f"{_relative(folder, root)}: function names use lowercase letters, digits, '_' and '-'")
            continue
        if not entry.is_file():
            problems.append(f"{_relative(entry, root)}: missing (every function folder needs an index.ts)")
            continue
        if folder.is_symlink():
            problems.append(f"{_relative(folder, root)}: a function folder may not be a symbolic link "
                            f"(it points to {folder.resolve()}); move the folder here instead")
            continue
        links = link_problems(folder, function_read_roots(folder, root), shown_from=root)
        if links:
            problems.extend(links)
            continue
        data: Any = {}
        if config_file.is_file():
            try:
                data = _read_json(config_file, root)
            except ManifestError as exc:
                problems.extend(exc.problems)
                continue
            if not isinstance(data, dict):
                problems.append(f"{_relative(config_file, root)}: top level: must be an object")
                continue
        try:
            config = FunctionConfig.model_validate(data, by_name=False)
        except ValidationError as exc:
            problems.extend(_describe(exc, config_file, root))
            continue
        route = config.route or f"/{name}"
        key = (config.method, _route_pattern(route))
        if key in routes and not config.internal:
            problems.append(f"{_relative(config_file, root)}: field 'route': {config.method} {route} "
                            f"is already the route of function '{routes[key]}'")
            continue
        if not config.internal:
            routes[key] = name
        specs[name] = FunctionSpec(
            name=name, directory=folder, entry=entry, config=config, route=route, method=config.method,
            auth=resolve_auth(config.auth, project.auth.default)[0],
            auth_optional=resolve_auth(config.auth, project.auth.default)[1],
            rate_limit=config.rate_limit or project.rate_limit,
            secrets=tuple(config.secrets if config.secrets is not None else project.secrets),
        )
        if specs[name].auth == "jwt" and project.auth.jwt is None:
            problems.append(f"{_relative(config_file, root)}: field 'auth': \"jwt\" needs 'auth.jwt' in flux.json")
    problems.extend(_call_problems(specs, {f.name for f in folders}, root))
    if (root / "lib").is_dir():
        problems.extend(link_problems(root / "lib", [root / "lib"], shown_from=root))
    if project.auth.default == "jwt" and project.auth.jwt is None:
        problems.append("flux.json: field 'auth.jwt': the default auth mode is \"jwt\" but no jwt settings are given")
    if problems:
        raise ManifestError(problems)
    return Project(root=root, config=project, functions=specs)


def _call_problems(specs: dict[str, FunctionSpec], folders: set[str], root: Path) -> list[str]:
    """``pushes`` must name async functions of the project and ``invokes`` functions of it (checked once every
    function is loaded, so the order of the folders does not matter). A target whose own folder is broken has
    its problem reported already and is not reported again here."""
    problems = []
    for spec in specs.values():
        shown = _relative(spec.directory / "flux.json", root)
        for target in spec.pushes:
            callee = specs.get(target)
            if callee is None and target in folders:
                continue
            if callee is None:
                problems.append(f"{shown}: field 'pushes': {target!r} is not a function of this project")
            elif not callee.is_async:
                problems.append(f"{shown}: field 'pushes': {target!r} is not async (only \"async\": true functions "
                                "have a queue); call it with ctx.function.invoke and list it in 'invokes' instead")
        for target in spec.invokes:
            if target not in specs and target not in folders:
                problems.append(f"{shown}: field 'invokes': {target!r} is not a function of this project")
    return problems


def resolve_auth(setting: AuthMode | AuthSetting | None, default: AuthMode) -> tuple[AuthMode, bool]:
    """(mode, optional) of a function's ``auth``: the string form, the object form, or the project default."""
    if isinstance(setting, AuthSetting):
        return setting.mode, setting.optional
    return setting or default, False


def _route_pattern(route: str) -> str:
    """Routes that differ only in parameter names collide: /a/{x} and /a/{y}."""
    return re.sub(r"\{[^}]+\}", "{}", route)


def json_schemas() -> dict[str, Any]:
    """JSON Schemas of both files, for editors and for `flux schema`."""
    project = ProjectConfig.model_json_schema(by_alias=True)
    auth = project["properties"]["auth"]
    # The loader also accepts the shorthand "auth": "api_key" (the default mode); publish it too.
    project["properties"]["auth"] = {"anyOf": [{k: v for k, v in auth.items() if k != "default"},
                                               {"enum": ["none", "api_key", "jwt"]}],
                                     "default": auth.get("default")}
    return {"project": project, "function": FunctionConfig.model_json_schema(by_alias=True)}
