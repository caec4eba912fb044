"""The gateway routing table (functions/gateway/routing.py).

Documented behaviour pinned here: empty path segments are ignored when matching, so
a trailing slash (``/orders/``) and doubled slashes (``//orders``) match ``/orders``.
"""

from __future__ import annotations

import pytest

from functions.gateway.routing import Route, RouteTable
from functions.shared.manifest import load_project


def route(function: str, method: str, path: str) -> Route:
    return Route(function, method, path, tuple(seg for seg in path.split("/") if seg))


ROUTES = [
    route("get_order", "GET", "/orders/{id}"),
    route("report", "GET", "/orders/report"),
    route("list_orders", "GET", "/orders"),
    route("create_order", "POST", "/orders"),
    route("item", "GET", "/orders/{id}/items/{item_id}"),
    route("report_day", "GET", "/orders/report/{day}"),
    route("under_id", "GET", "/orders/{id}/summary"),
    route("home", "GET", "/"),
]


@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
def test_literal_beats_param_regardless_of_declaration_order(order: tuple[int, ...]) -> None:
    pair = [route("get_order", "GET", "/orders/{id}"), route("report", "GET", "/orders/report")]
    table = RouteTable([pair[i] for i in order])
    match = table.match("GET", "/orders/report")
    assert match is not None and match.route.function == "report"
    assert match.path_parameters == {}
    other = table.match("GET", "/orders/123")
    assert other is not None and other.route.function == "get_order"
    assert other.path_parameters == {"id": "123"}


def test_leftmost_literal_wins_between_two_param_routes() -> None:
    table = RouteTable(list(reversed(ROUTES)))
    match = table.match("GET", "/orders/report/summary")
    assert match is not None and match.route.function == "report_day"
    assert match.path_parameters == {"day": "summary"}
    match = table.match("GET", "/orders/7/summary")
    assert match is not None and match.route.function == "under_id"


def test_multiple_params() -> None:
    match = RouteTable(ROUTES).match("GET", "/orders/7/items/x9")
    assert match is not None
    assert match.route.function == "item"
    assert match.path_parameters == {"id": "7", "item_id": "x9"}


def test_method_mismatch_is_none() -> None:
    table = RouteTable(ROUTES)
    assert table.match("DELETE", "/orders") is None
    assert table.match("POST", "/orders/report") is None


def test_method_is_case_insensitive() -> None:
    match = RouteTable(ROUTES).match("post", "/orders")
    assert match is not None and match.route.function == "create_order"


def test_unknown_paths_are_none() -> None:
    table = RouteTable(ROUTES)
    assert table.match("GET", "/customers") is None
    assert table.match("GET", "/orders/1/items") is None
    assert table.match("GET", "/orders/1/items/2/3") is None
    assert table.match("GET", "/Orders") is None


def test_path_params_are_url_decoded() -> None:
    table = RouteTable(ROUTES)
    match = table.match("GET", "/orders/a%20b%2Fc%C3%A9")
    assert match is not None and match.route.function == "get_order"
    assert match.path_parameters == {"id": "a b/cé"}


def test_encoded_literal_does_not_match_the_literal_route() -> None:
    match = RouteTable(ROUTES).match("GET", "/orders/r%65port")
    assert match is not None and match.route.function == "get_order"
    assert match.path_parameters == {"id": "report"}


def test_trailing_and_doubled_slashes_are_ignored() -> None:
    table = RouteTable(ROUTES)
    for path in ("/orders/", "//orders", "/orders//"):
        match = table.match("GET", path)
        assert match is not None and match.route.function == "list_orders", path
    match = table.match("GET", "/orders/5/")
    assert match is not None and match.path_parameters == {"id": "5"}


def test_root_route() -> None:
    table = RouteTable(ROUTES)
    match = table.match("GET", "/")
    assert match is not None and match.route.function == "home"
    assert table.match("GET", "") is not None


def test_methods_for() -> None:
    table = RouteTable(ROUTES)
    assert table.methods_for("/orders") == ["GET", "POST"]
    assert table.methods_for("/orders/1") == ["GET"]
    assert table.methods_for("/nowhere") == []


def test_route_key_and_routes_copy() -> None:
    table = RouteTable(ROUTES)
    assert route("f", "POST", "/orders/{id}").route_key == "POST /orders/{id}"
    routes = table.routes
    routes.clear()
    assert len(table.routes) == len(ROUTES)


def test_from_project(make_project) -> None:
    root = make_project(None, {
        "get_order": {"route": "/orders/{id}", "method": "GET"},
        "report": {"route": "/orders/report", "method": "GET"},
        "create_order": {"route": "/orders"},
        "ping": None,
    })
    table = RouteTable.from_project(load_project(root))
    assert {r.route_key for r in table.routes} == {"GET /orders/{id}", "GET /orders/report", "POST /orders",
                                                   "POST /ping"}
    match = table.match("GET", "/orders/report")
    assert match is not None and match.route.function == "report"
    match = table.match("POST", "/ping")
    assert match is not None and match.route.function == "ping"
    assert table.match("GET", "/ping") is None


def test_a_path_parameter_is_decoded_exactly_once() -> None:
    """Issue #14 (11): %252F is an encoded "%2F" and must stay "%2F", never become "/"."""
    table = RouteTable(ROUTES)
    assert table.match("GET", "/orders/a%252Fb").path_parameters == {"id": "a%2Fb"}
    assert table.match("GET", "/orders/a%2Fb").path_parameters == {"id": "a/b"}


def test_internal_functions_get_no_route(tmp_path) -> None:
    import json

    from functions.shared.manifest import load_project

    (tmp_path / "flux.json").write_text(json.dumps({"name": "p"}))
    for name, config in (("pub", {}), ("hidden", {"internal": True})):
        (tmp_path / "functions" / name).mkdir(parents=True)
        (tmp_path / "functions" / name / "index.ts").write_text("export default async () => 1;")
        (tmp_path / "functions" / name / "flux.json").write_text(json.dumps(config))
    table = RouteTable.from_project(load_project(tmp_path))
    assert [r.function for r in table.routes] == ["pub"]
