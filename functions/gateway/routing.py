"""The routing table built from flux.json: method + path (with ``{param}`` segments) to a function.

:meth:`RouteTable.match` takes the path as sent (percent-encoded): it is split on
"/" first and each segment decoded exactly once, so ``/items/a%2Fb`` gives
``id = "a/b"`` and ``/items/a%252Fb`` gives ``id = "a%2Fb"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import unquote

from functions.shared.manifest_bundle import route_key

if TYPE_CHECKING:
    from functions.shared.manifest import Project


@dataclass(frozen=True, slots=True)
class Route:
    function: str
    method: str
    path: str
    segments: tuple[str, ...]

    @property
    def route_key(self) -> str:
        return route_key(self.method, self.path)


@dataclass(frozen=True, slots=True)
class Match:
    route: Route
    path_parameters: dict[str, str]


class RouteTable:
    """Matches requests to routes. Literal segments win over ``{param}`` segments."""

    def __init__(self, routes: list[Route]) -> None:
        # Most specific first: more literal segments earlier, so /orders/report beats /orders/{id}.
        self._routes = sorted(routes, key=lambda r: [seg.startswith("{") for seg in r.segments])

    @classmethod
    def from_project(cls, project: Project) -> RouteTable:
        routes = [Route(spec.name, spec.method, spec.route, _split(spec.route)) for spec in project.functions.values()
                  if not spec.internal]  # internal functions are reached by ctx.function.invoke only
        return cls(routes)

    @property
    def routes(self) -> list[Route]:
        return list(self._routes)

    def match(self, method: str, path: str) -> Match | None:
        segments = _split(path)
        method = method.upper()
        for route in self._routes:
            if route.method != method:
                continue
            params = _match_segments(route.segments, segments)
            if params is not None:
                return Match(route, params)
        return None

    def methods_for(self, path: str) -> list[str]:
        """Methods routed at ``path`` (for CORS preflight and 405-style hints)."""
        segments = _split(path)
        return sorted({r.method for r in self._routes if _match_segments(r.segments, segments) is not None})


def _split(path: str) -> tuple[str, ...]:
    return tuple(seg for seg in path.split("/") if seg)


def _match_segments(pattern: tuple[str, ...], segments: tuple[str, ...]) -> dict[str, str] | None:
    if len(pattern) != len(segments):
        return None
    params: dict[str, str] = {}
    for want, got in zip(pattern, segments, strict=True):
        if want.startswith("{"):
            params[want[1:-1]] = unquote(got)  # the one decoding of this segment
        elif want != got:  # literals compare as sent: "r%65port" is not "report"
            return None
    return params
