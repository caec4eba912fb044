"""flux.json models and the strict project loader (DESIGN §4, functions/shared/manifest.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from functions.shared.errors import FluxError
from functions.shared.manifest import (
    FunctionConfig,
    JwtConfig,
    ManifestError,
    ProjectConfig,
    json_schemas,
    load_project,
)

JWT_PROJECT = {"name": "demo", "auth": {"default": "none",
                                       "jwt": {"jwks_url": "https://id.example.com/jwks.json",
                                               "algorithms": ["RS256"]}}}


def problems_of(root: Path) -> list[str]:
    with pytest.raises(ManifestError) as info:
        load_project(root)
    return info.value.problems


def only_problem(root: Path) -> str:
    problems = problems_of(root)
    assert len(problems) == 1, problems
    return problems[0]


# ---------------------------------------------------------------------------------------------- defaults


def test_function_config_defaults_match_the_design_table() -> None:
    config = FunctionConfig()
    assert config.route is None
    assert config.method == "POST"
    assert config.async_ is False
    assert config.auth is None
    assert config.rate_limit is None
    assert config.timeout_ms == 10_000
    assert config.memory_mb == 256
    assert (config.retry.max_attempts, config.retry.backoff, config.retry.base_ms) == (3, "exponential", 1000)
    assert config.ordering is None
    assert config.allow_net == []
    assert config.input_schema is None


def test_project_config_defaults_match_the_design() -> None:
    config = ProjectConfig(name="demo")
    assert config.functions_dir == "functions"
    assert config.auth.default == "none"
    assert config.auth.jwt is None
    assert config.cors.origins == []
    assert config.cors.max_age == 600
    assert "content-type" in config.cors.headers
    assert config.rate_limit is None
    assert config.database.url is None
    assert config.database.provision is False
    obs = config.observability
    assert (obs.slow_query_ms, obs.n_plus_one_threshold, obs.retention_days) == (100, 5, 14)
    assert config.limits.max_body_bytes == 1_048_576


def test_function_without_flux_json_gets_route_from_folder_and_project_defaults(make_project) -> None:
    project_file = {"name": "demo", "auth": {"default": "api_key"},
                    "rate_limit": {"requests": 10, "per_seconds": 1}}
    root = make_project(project_file, {"create_order": None})
    project = load_project(root)
    spec = project.function("create_order")
    assert spec.name == "create_order"
    assert spec.route == "/create_order"
    assert spec.method == "POST"
    assert spec.auth == "api_key"
    assert spec.rate_limit is not None
    assert (spec.rate_limit.requests, spec.rate_limit.per_seconds) == (10, 1)
    assert spec.directory == root.resolve() / "functions" / "create_order"
    assert spec.entry == spec.directory / "index.ts"
    assert spec.is_async is False
    assert project.root == root.resolve()


def test_function_settings_override_project_defaults(make_project) -> None:
    root = make_project({"name": "demo", "auth": "api_key", "rate_limit": {"requests": 10}},
                        {"pub": {"route": "/orders/{id}", "method": "GET", "auth": "none",
                                 "rate_limit": {"requests": 5, "per_seconds": 2, "burst": 3}},
                         "job": {"async": True, "retry": {"max_attempts": 5}}})
    project = load_project(root)
    pub = project.function("pub")
    assert (pub.route, pub.method, pub.auth) == ("/orders/{id}", "GET", "none")
    assert pub.rate_limit is not None and (pub.rate_limit.requests, pub.rate_limit.burst) == (5, 3)
    job = project.function("job")
    assert job.is_async is True
    assert job.config.retry.max_attempts == 5
    assert job.config.retry.backoff == "exponential"


def test_hidden_and_underscore_folders_are_skipped(make_project) -> None:
    root = make_project(None, {"real": None})
    (root / "functions" / ".cache").mkdir()
    (root / "functions" / "_shared").mkdir()
    (root / "functions" / "README.md").write_text("not a function")
    assert set(load_project(root).functions) == {"real"}


def test_project_without_functions_dir_has_no_functions(make_project) -> None:
    assert load_project(make_project({"name": "empty"})).functions == {}


def test_custom_functions_dir(make_project, tmp_path: Path) -> None:
    root = make_project({"name": "demo", "functions_dir": "src"})
    (root / "src" / "hello").mkdir(parents=True)
    (root / "src" / "hello" / "index.ts").write_text("export default () => 1;\n")
    assert list(load_project(root).functions) == ["hello"]


def test_missing_project_file_is_a_manifest_error(tmp_path: Path) -> None:
    problem = only_problem(tmp_path)
    assert "flux.json" in problem
    assert "not found" in problem


def test_manifest_error_is_a_400_flux_error() -> None:
    err = ManifestError(["a: b", "c: d"])
    assert isinstance(err, FluxError)
    assert (err.status, err.code) == (400, "invalid_manifest")
    assert err.message == "a: b\nc: d"


# ---------------------------------------------------------------------------------------------- errors


def test_unknown_key_names_relative_file_and_field(make_project) -> None:
    root = make_project(None, {"create_order": {"route": "/orders", "colour": "red"}})
    assert only_problem(root) == "functions/create_order/flux.json: field 'colour': unknown key"


def test_unknown_nested_key_names_the_dotted_field(make_project) -> None:
    root = make_project(None, {"job": {"async": True, "retry": {"max_attempts": 2, "jitter": True}}})
    assert only_problem(root) == "functions/job/flux.json: field 'retry.jitter': unknown key"


def test_unknown_key_in_project_file(make_project) -> None:
    root = make_project({"name": "demo", "observability": {"slow_ms": 5}})
    assert only_problem(root) == "flux.json: field 'observability.slow_ms': unknown key"


@pytest.mark.parametrize(("field", "value"), [
    ("timeout_ms", "10"),
    ("timeout_ms", 10.5),
    ("memory_mb", True),
    ("allow_net", "api.example.com"),
    ("async", "yes"),
    ("method", "get"),
    ("method", "HEAD"),
    ("auth", "basic"),
    ("memory_mb", 32),
    ("timeout_ms", 0),
])
def test_wrong_type_or_value_names_the_field(make_project, field: str, value: Any) -> None:
    root = make_project(None, {"fn": {field: value}})
    problem = only_problem(root)
    assert problem.startswith(f"functions/fn/flux.json: field '{field}'"), problem


@pytest.mark.parametrize("route", ["orders", "/orders/", "/orders/{1id}", "/orders/{id", "/a b", "/orders/{id}x",
                                   "", "/a?b=1"])
def test_bad_route_shape_is_rejected(make_project, route: str) -> None:
    problem = only_problem(make_project(None, {"fn": {"route": route}}))
    assert problem.startswith("functions/fn/flux.json: field 'route':"), problem


@pytest.mark.parametrize("route", ["/", "/orders", "/orders/{id}", "/v1/orders.json", "/a-b/c_d/{x_1}/e~f"])
def test_good_route_shapes_are_accepted(route: str) -> None:
    assert FunctionConfig.model_validate({"route": route}).route == route


def test_route_with_empty_segment_is_rejected() -> None:
    with pytest.raises(ValidationError):
        FunctionConfig.model_validate({"route": "//a"})


def test_duplicate_method_and_route_between_two_functions(make_project) -> None:
    root = make_project(None, {"a_one": {"route": "/orders"}, "b_two": {"route": "/orders"}})
    problem = only_problem(root)
    assert problem.startswith("functions/b_two/flux.json: field 'route':"), problem
    assert "POST /orders" in problem
    assert "'a_one'" in problem


def test_duplicate_routes_differing_only_in_param_names(make_project) -> None:
    root = make_project(None, {"get_a": {"route": "/a/{x}", "method": "GET"},
                               "get_b": {"route": "/a/{y}", "method": "GET"}})
    problem = only_problem(root)
    assert "functions/get_b/flux.json" in problem
    assert "'get_a'" in problem


def test_default_route_collides_with_explicit_route(make_project) -> None:
    root = make_project(None, {"orders": None, "other": {"route": "/orders"}})
    assert "'orders'" in only_problem(root)


def test_same_route_with_different_methods_is_fine(make_project) -> None:
    root = make_project(None, {"list_orders": {"route": "/orders", "method": "GET"},
                               "create_order": {"route": "/orders", "method": "POST"},
                               "report": {"route": "/orders/report", "method": "GET"},
                               "get_order": {"route": "/orders/{id}", "method": "GET"}})
    assert len(load_project(root).functions) == 4


def test_missing_index_ts(make_project) -> None:
    root = make_project(None, {"fn": {"route": "/fn"}}, without_index=("fn",))
    problem = only_problem(root)
    assert problem.startswith("functions/fn/index.ts: missing"), problem


def test_invalid_json_reports_line_and_column(make_project) -> None:
    root = make_project(None, {"fn": '{\n  "route": "/a"\n  "method": "GET"\n}'})
    problem = only_problem(root)
    assert problem.startswith("functions/fn/flux.json: invalid JSON at line 3 column 3"), problem


def test_invalid_json_in_project_file(make_project) -> None:
    problem = only_problem(make_project('{"name": "demo",}'))
    assert problem.startswith("flux.json: invalid JSON at line 1 column 17"), problem


def test_non_utf8_flux_json(make_project) -> None:
    root = make_project(None, {"fn": None})
    (root / "functions" / "fn" / "flux.json").write_bytes(b'{"route": "/\xff"}')
    assert only_problem(root) == "functions/fn/flux.json: not UTF-8 text"


@pytest.mark.parametrize("text", ["[1, 2]", '"route"', "null", "3"])
def test_non_object_top_level_in_function_file(make_project, text: str) -> None:
    assert only_problem(make_project(None, {"fn": text})) == "functions/fn/flux.json: top level: must be an object"


def test_non_object_top_level_in_project_file(make_project) -> None:
    assert only_problem(make_project("[]")) == "flux.json: top level: must be an object"


@pytest.mark.parametrize("folder", ["CreateOrder", "1abc", "has space", "x" * 65, "ünï"])
def test_bad_function_folder_name(make_project, folder: str) -> None:
    problem = only_problem(make_project(None, {folder: None}))
    assert problem.startswith(f"functions/{folder}:"), problem
    assert "function names" in problem


def test_bad_project_name(make_project) -> None:
    assert only_problem(make_project({"name": "my app"})).startswith("flux.json: field 'name':")


def test_project_name_is_required(make_project) -> None:
    assert only_problem(make_project({})).startswith("flux.json: field 'name':")


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "LOCALHOST:8080", "10.0.0.5", "169.254.169.254",
                                  "192.168.1.1:80", "172.16.0.1", "0.0.0.0", "100.64.0.1", "http://api.example.com",
                                  "api.example.com/path", "[::1]", ""])
def test_allow_net_rejects_private_loopback_link_local_and_non_hosts(host: str) -> None:
    with pytest.raises(ValidationError) as info:
        FunctionConfig.model_validate({"allow_net": [host]})
    assert info.value.errors()[0]["loc"] == ("allow_net",)


@pytest.mark.parametrize("host", ["api.example.com:443", "api.example.com", "*.example.com", "8.8.8.8",
                                  "1.1.1.1:853"])
def test_allow_net_accepts_public_hosts(host: str) -> None:
    assert FunctionConfig.model_validate({"allow_net": [host]}).allow_net == [host]


def test_allow_net_rejects_short_form_loopback() -> None:
    with pytest.raises(ValidationError):
        FunctionConfig.model_validate({"allow_net": ["127.1"]})


def test_allow_net_error_through_loader_names_file_and_field(make_project) -> None:
    problem = only_problem(make_project(None, {"fn": {"allow_net": ["api.example.com:443", "169.254.169.254"]}}))
    assert problem.startswith("functions/fn/flux.json: field 'allow_net':"), problem
    assert "169.254.169.254" in problem


def test_invalid_input_schema_is_rejected(make_project) -> None:
    problem = only_problem(make_project(None, {"fn": {"input_schema": {"type": "nope"}}}))
    assert problem.startswith("functions/fn/flux.json: field 'input_schema': not a valid JSON Schema"), problem


def test_valid_input_schema_is_kept() -> None:
    schema = {"type": "object", "required": ["total"], "properties": {"total": {"type": "number", "minimum": 0}}}
    assert FunctionConfig.model_validate({"input_schema": schema}).input_schema == schema


def test_ordering_without_async_is_rejected(make_project) -> None:
    problem = only_problem(make_project(None, {"fn": {"ordering": {"group_by": "user_id"}}}))
    assert problem.startswith("functions/fn/flux.json:"), problem
    assert "'ordering' applies to async functions only" in problem


def test_ordering_with_async_is_accepted() -> None:
    config = FunctionConfig.model_validate({"async": True, "ordering": {"group_by": "user_id"}})
    assert config.ordering is not None and config.ordering.group_by == "user_id"


def test_function_jwt_without_project_jwt_settings(make_project) -> None:
    problem = only_problem(make_project(None, {"fn": {"auth": "jwt"}}))
    assert problem.startswith("functions/fn/flux.json: field 'auth':"), problem
    assert "auth.jwt" in problem


def test_function_jwt_with_project_jwt_settings(make_project) -> None:
    project = load_project(make_project(JWT_PROJECT, {"fn": {"auth": "jwt"}}))
    assert project.function("fn").auth == "jwt"
    assert project.config.auth.jwt is not None
    assert project.config.auth.jwt.jwks_url == "https://id.example.com/jwks.json"


def test_project_default_jwt_without_settings(make_project) -> None:
    assert only_problem(make_project({"name": "demo", "auth": "jwt"})).startswith("flux.json: field 'auth.jwt':")


@pytest.mark.parametrize("mode", ["none", "api_key"])
def test_project_auth_string_shorthand(make_project, mode: str) -> None:
    project = load_project(make_project({"name": "demo", "auth": mode}, {"fn": None}))
    assert project.config.auth.default == mode
    assert project.function("fn").auth == mode


def test_project_auth_shorthand_rejects_unknown_mode(make_project) -> None:
    assert only_problem(make_project({"name": "demo", "auth": "basic"})).startswith("flux.json: field 'auth")


# ---------------------------------------------------------------------------------------------- JwtConfig


@pytest.mark.parametrize("data", [
    {"jwks_url": "https://id.example.com/jwks", "algorithms": ["RS256", "ES256", "PS256"]},
    {"jwks_url": "https://id.example.com/jwks"},
    {"secret_name": "JWT_SECRET", "algorithms": ["HS256"]},
    {"secret_name": "JWT_SECRET", "algorithms": ["HS256", "HS512"], "issuer": "me", "audience": "you"},
])
def test_jwt_config_valid(data: dict[str, Any]) -> None:
    config = JwtConfig.model_validate(data)
    assert bool(config.jwks_url) != bool(config.secret_name)


@pytest.mark.parametrize(("data", "fragment"), [
    ({}, "exactly one of"),
    ({"jwks_url": "https://x/jwks", "secret_name": "S", "algorithms": ["RS256"]}, "exactly one of"),
    ({"secret_name": "S", "algorithms": ["RS256"]}, "HS* algorithms only"),
    ({"secret_name": "S", "algorithms": ["HS256", "RS256"]}, "HS* algorithms only"),
    ({"jwks_url": "https://x/jwks", "algorithms": ["HS256"]}, "RS*/ES*/PS*"),
    ({"jwks_url": "https://x/jwks", "algorithms": ["RS256", "HS256"]}, "RS*/ES*/PS*"),
])
def test_jwt_config_key_source_and_algorithm_family(data: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError) as info:
        JwtConfig.model_validate(data)
    assert fragment in str(info.value)


@pytest.mark.parametrize("algorithm", ["none", "HS1", "rs256"])
def test_jwt_config_rejects_algorithms_outside_the_allowlist(algorithm: str) -> None:
    with pytest.raises(ValidationError):
        JwtConfig.model_validate({"jwks_url": "https://x/jwks", "algorithms": [algorithm]})


def test_jwt_problem_through_loader_names_nested_field(make_project) -> None:
    root = make_project({"name": "demo", "auth": {"jwt": {"secret_name": "S", "algorithms": ["RS256"]}}})
    problem = only_problem(root)
    assert problem.startswith("flux.json: field 'auth.jwt':"), problem


# ---------------------------------------------------------------------------------------------- many problems


def test_several_problems_are_reported_together(make_project) -> None:
    root = make_project(None, {
        "a_unknown": {"colour": "red"},
        "b_type": {"timeout_ms": "10"},
        "c_json": "{",
        "d_noindex": None,
        "e_ok": None,
        "BadName": None,
    }, without_index=("d_noindex",))
    with pytest.raises(ManifestError) as info:
        load_project(root)
    problems = info.value.problems
    assert len(problems) == 5, problems
    joined = str(info.value)
    for fragment in ("functions/a_unknown/flux.json", "functions/b_type/flux.json", "functions/c_json/flux.json",
                     "functions/d_noindex/index.ts", "functions/BadName"):
        assert fragment in joined
    assert joined == "\n".join(problems)


def test_several_field_problems_in_one_file(make_project) -> None:
    problems = problems_of(make_project(None, {"fn": {"timeout_ms": "1", "memory_mb": "2", "x": 1}}))
    fields = sorted(p.split("'")[1] for p in problems)
    assert fields == ["memory_mb", "timeout_ms", "x"]


# ---------------------------------------------------------------------------------------------- JSON Schema


def test_json_schemas_are_valid_draft_2020_12() -> None:
    schemas = json_schemas()
    assert set(schemas) == {"project", "function"}
    for schema in schemas.values():
        Draft202012Validator.check_schema(schema)


def test_function_schema_uses_the_async_alias_and_forbids_unknown_keys() -> None:
    schema = json_schemas()["function"]
    assert "async" in schema["properties"]
    assert "async_" not in schema["properties"]
    assert schema["additionalProperties"] is False
    validator = Draft202012Validator(schema)
    assert validator.is_valid({"route": "/orders/{id}", "method": "GET", "async": False, "allow_net": ["a.b:443"]})
    assert not validator.is_valid({"colour": "red"})
    assert not validator.is_valid({"timeout_ms": "10"})
    assert not validator.is_valid({"method": "HEAD"})


def test_project_schema_requires_name() -> None:
    validator = Draft202012Validator(json_schemas()["project"])
    assert validator.is_valid({"name": "demo", "limits": {"max_body_bytes": 1024}})
    assert not validator.is_valid({})
    assert not validator.is_valid({"name": "demo", "unknown": 1})


def test_project_schema_accepts_auth_shorthand() -> None:
    assert Draft202012Validator(json_schemas()["project"]).is_valid({"name": "demo", "auth": "api_key"})


def test_python_field_name_async_underscore_is_an_unknown_key(make_project) -> None:
    problem = only_problem(make_project(None, {"fn": {"async_": True}}))
    assert "unknown key" in problem


@pytest.mark.parametrize("host", ["example.com:0", "example.com:65536", "example.com:99999"])
def test_allow_net_ports_must_be_in_range(make_project, host):
    root = make_project(None, {"f": {"allow_net": [host]}})
    with pytest.raises(ManifestError, match="port"):
        load_project(root)


# -- issue #14: secrets per function, internal functions, trusted proxies, special-purpose addresses ----------

def _security_project(tmp_path, project: dict, functions: dict[str, dict]):
    import json

    from functions.shared.manifest import load_project

    (tmp_path / "flux.json").write_text(json.dumps({"name": "p", **project}))
    for name, config in functions.items():
        (tmp_path / "functions" / name).mkdir(parents=True)
        (tmp_path / "functions" / name / "index.ts").write_text("export default async () => 1;")
        (tmp_path / "functions" / name / "flux.json").write_text(json.dumps(config))
    return load_project(tmp_path)


def test_secrets_default_to_the_project_list_and_a_function_list_replaces_it(tmp_path) -> None:
    project = _security_project(tmp_path, {"secrets": ["SHARED"]}, {"a": {}, "b": {"secrets": ["STRIPE_KEY"]},
                                                                    "c": {"secrets": []}})
    assert project.functions["a"].secrets == ("SHARED",)
    assert project.functions["b"].secrets == ("STRIPE_KEY",)
    assert project.functions["c"].secrets == ()


def test_a_bad_secret_name_is_refused_naming_the_field(tmp_path) -> None:
    import pytest

    from functions.shared.manifest import ManifestError

    with pytest.raises(ManifestError, match=r"functions/a/flux.json: field 'secrets'"):
        _security_project(tmp_path, {}, {"a": {"secrets": ["no spaces"]}})


def test_internal_functions_may_share_a_route_with_a_public_one(tmp_path) -> None:
    project = _security_project(tmp_path, {}, {"a": {"route": "/x"}, "b": {"route": "/x", "internal": True}})
    assert project.functions["b"].internal and not project.functions["a"].internal


def test_trusted_proxies_must_be_addresses(tmp_path) -> None:
    import pytest

    from functions.shared.manifest import ManifestError

    (tmp_path / "ok").mkdir()
    (tmp_path / "bad").mkdir()
    project = _security_project(tmp_path / "ok", {"gateway": {"trusted_proxies": ["10.0.0.0/8"]}}, {})
    assert project.config.gateway.trusted_proxies == ["10.0.0.0/8"]
    with pytest.raises(ManifestError, match=r"gateway\.trusted_proxies"):
        _security_project(tmp_path / "bad", {"gateway": {"trusted_proxies": ["proxy.local"]}}, {})


@pytest.mark.parametrize("host", ["192.0.2.1", "198.51.100.7", "203.0.113.5", "100.64.0.1", "198.18.0.1",
                                  "192.0.0.8", "0.1.2.3", "224.0.0.251", "240.0.0.1", "255.255.255.255",
                                  "[2001:db8::1]", "[fc00::1]", "[fe80::1]", "[::ffff:127.0.0.1]", "[64:ff9b::1]",
                                  "[ff02::1]", "[2001:db8::1]:443"])
def test_every_special_purpose_address_is_refused_in_allow_net(tmp_path, host: str) -> None:
    from functions.shared.manifest import ManifestError

    with pytest.raises(ManifestError, match="special-purpose"):
        _security_project(tmp_path, {}, {"a": {"allow_net": [host]}})


def test_a_global_ipv6_literal_is_allowed(tmp_path) -> None:
    project = _security_project(tmp_path, {}, {"a": {"allow_net": ["[2606:4700::1111]:443"]}})
    assert project.functions["a"].config.allow_net == ["[2606:4700::1111]:443"]


# -- issue #13: declared pushes and invokes, concurrency ----------------------------------------------------

def test_pushes_invokes_and_concurrency_defaults() -> None:
    config = FunctionConfig()
    assert config.pushes == [] and config.invokes == []
    assert config.concurrency == 10


def test_declared_pushes_and_invokes_are_loaded(tmp_path) -> None:
    project = _security_project(tmp_path, {}, {"a": {"pushes": ["job"], "invokes": ["b"], "concurrency": 3},
                                               "b": {}, "job": {"async": True}})
    assert project.functions["a"].pushes == ("job",) and project.functions["a"].invokes == ("b",)
    assert project.functions["a"].config.concurrency == 3
    assert project.functions["b"].pushes == () and project.functions["b"].invokes == ()


def test_a_push_to_an_unknown_function_names_the_file_and_field(tmp_path) -> None:
    with pytest.raises(ManifestError) as info:
        _security_project(tmp_path, {}, {"a": {"pushes": ["nope"]}})
    assert info.value.problems == ["functions/a/flux.json: field 'pushes': 'nope' is not a function of this project"]


def test_a_push_to_a_function_that_is_not_async_is_refused(tmp_path) -> None:
    with pytest.raises(ManifestError) as info:
        _security_project(tmp_path, {}, {"a": {"pushes": ["b"]}, "b": {}})
    (problem,) = info.value.problems
    assert problem.startswith("functions/a/flux.json: field 'pushes': 'b' is not async")
    assert "'invokes'" in problem


def test_an_invoke_of_an_unknown_function_is_refused(tmp_path) -> None:
    with pytest.raises(ManifestError) as info:
        _security_project(tmp_path, {}, {"a": {"invokes": ["ghost"]}})
    assert info.value.problems == ["functions/a/flux.json: field 'invokes': 'ghost' is not a function of this project"]


def test_a_broken_target_is_reported_once_not_again_as_unknown(tmp_path) -> None:
    with pytest.raises(ManifestError) as info:
        _security_project(tmp_path, {}, {"a": {"invokes": ["b"]}, "b": {"colour": "red"}})
    assert info.value.problems == ["functions/b/flux.json: field 'colour': unknown key"]


@pytest.mark.parametrize(("config", "message"), [
    ({"pushes": ["Bad Name"]}, "is not a function name"),
    ({"invokes": ["b", "b"]}, "listed more than once"),
    ({"pushes": "job"}, "valid list"),
    ({"concurrency": 0}, "greater than or equal to 1"),
    ({"concurrency": 1001}, "less than or equal to 1000"),
    ({"concurrency": "5"}, "valid integer"),
    ({"async": True, "concurrency": 1}, "at least 2"),
])
def test_bad_call_declarations_and_concurrency_name_the_field(tmp_path, config, message) -> None:
    with pytest.raises(ManifestError) as info:
        _security_project(tmp_path, {}, {"a": config, "b": {}})
    (problem,) = info.value.problems
    assert problem.startswith("functions/a/flux.json: ") and message in problem, problem


def test_the_published_function_schema_has_the_call_declarations() -> None:
    schema = json_schemas()["function"]
    assert schema["properties"]["pushes"]["type"] == "array"
    assert schema["properties"]["invokes"]["type"] == "array"
    assert schema["properties"]["concurrency"]["default"] == 10
    assert schema["properties"]["concurrency"]["maximum"] == 1000


@pytest.mark.parametrize(("value", "name"), [(None, "flux_app"), (True, "flux_app"), ("shop_app", "shop_app"),
                                             (False, None)])
def test_database_app_role_names_the_role_user_code_runs_as(value: Any, name: str | None) -> None:
    database = {"url": "postgresql://u@db/x"} if value is None else {"url": "postgresql://u@db/x", "app_role": value}
    assert ProjectConfig.model_validate({"name": "p", "database": database}).database.app_role_name == name


@pytest.mark.parametrize("bad", ["Flux-App", "1app", "pg_app", "a" * 64, "", 3])
def test_database_app_role_must_be_a_plain_role_name_or_false(bad: Any) -> None:
    with pytest.raises(ValidationError, match="app_role"):
        ProjectConfig.model_validate({"name": "p", "database": {"app_role": bad}})


@pytest.mark.parametrize(("stages", "stage", "profile"), [
    ({}, "prod", "prod"), ({}, "dev", "dev"), ({}, "staging", "dev"),
    ({"staging": {"profile": "prod"}}, "staging", "prod"), ({"prod": {"profile": "dev"}}, "prod", "dev")])
def test_stage_profile_from_flux_json_or_the_stage_name(stages: dict, stage: str, profile: str) -> None:
    assert ProjectConfig.model_validate({"name": "p", "stages": stages}).stage_profile(stage) == profile


@pytest.mark.parametrize("proxy", [None, True, False])
def test_database_proxy_is_optional_and_boolean(proxy: bool | None) -> None:
    database = {"provision": True} if proxy is None else {"provision": True, "proxy": proxy}
    assert ProjectConfig.model_validate({"name": "p", "database": database}).database.proxy is proxy


@pytest.mark.parametrize(("project", "field"), [
    ({"stages": {"dev": {"profile": "production"}}}, "stages.dev.profile"),
    ({"stages": {"dev": {"profile": "dev", "nat": True}}}, "stages.dev.nat"),
    ({"stages": {"9lives": {"profile": "dev"}}}, "stages"),
    ({"stages": ["dev"]}, "stages"),
    ({"database": {"provision": True, "proxy": "yes"}}, "database.proxy"),
])
def test_bad_stage_settings_name_the_file_and_field(make_project, project: dict, field: str) -> None:
    problem = only_problem(make_project({"name": "p", **project}, {"hello": {}}))
    assert "flux.json" in problem and field in problem, problem
