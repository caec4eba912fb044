"""One client for the observability API, whether it is hosted, a running ``flux dev``, or a project's files.

The API is found in this order (DESIGN §4 "CLI"): ``--api-url``, then
``FLUX_API_URL``, then the hosted API saved by ``flux login``, then the project
in the current directory (or ``--project-dir``): its running ``flux dev`` (from
``.flux/dev.json`` when that process is alive and answers), else its
``.flux/traces.db`` read directly through an in-process :class:`ObservabilityApi`.
Every path speaks the same API, so commands never care which one they got.

A URL may be given as the deployment's base (``http://127.0.0.1:4000``) or the
API base (``.../_flux/api``). Credentials live in ``~/.config/flux/credentials.json``
(``$FLUX_CONFIG_DIR`` or ``$XDG_CONFIG_HOME/flux`` override), mode 0600.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from functions.shared.local_io import pid_alive

if TYPE_CHECKING:
    import httpx

API_SUFFIX = "/_flux/api"
PROBE_TIMEOUT_S = 1.0


class ApiError(Exception):
    """An API call failed: ``status`` 0 means the API could not be reached at all."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class ApiClient(ABC):
    #: Where the answers come from, for messages ("flux dev at http://...", "hosted API at ...").
    description: str

    @abstractmethod
    def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        """GET ``path`` (relative to the API base) and return the decoded JSON; :class:`ApiError` on failure."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


def _clean(params: Mapping[str, Any] | None) -> dict[str, str]:
    return {k: str(v) for k, v in (params or {}).items() if v is not None and v != ""}


def _error_from(status: int, body: Any) -> ApiError:
    if isinstance(body, dict) and "error" in body:
        return ApiError(status, str(body["error"]), str(body.get("message") or body["error"]))
    return ApiError(status, f"http_{status}", f"the API answered HTTP {status}")


def api_base(url: str) -> str:
    base = url.strip().rstrip("/")
    return base if base.endswith(API_SUFFIX) else base + API_SUFFIX


class HttpApiClient(ApiClient):
    def __init__(self, base_url: str, *, key: str | None = None, timeout_s: float = 10.0,
                 description: str | None = None, transport: httpx.BaseTransport | None = None) -> None:
        self.base_url = api_base(base_url)
        self.description = description or f"API at {self.base_url}"
        import httpx

        headers = {"accept": "application/json", "user-agent": "flux-cli"}
        if key:
            headers["x-api-key"] = key
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout_s, transport=transport)

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        import httpx

        try:
            response = self._http.get(path, params=_clean(params))
        except httpx.HTTPError as exc:
            raise ApiError(0, "unreachable", f"cannot reach {self.base_url}: {exc}") from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code >= 400:
            raise _error_from(response.status_code, body)
        if body is None:
            raise ApiError(response.status_code, "invalid_response", f"{self.base_url}{path} did not answer JSON")
        return body

    def close(self) -> None:
        self._http.close()


class InProcessClient(ApiClient):
    """Reads ``.flux/traces.db`` with the API's own code: no server needed to look at past requests."""

    def __init__(self, project_dir: Path) -> None:
        from functions.observability.api import ObservabilityApi
        from functions.observability.sqlite_store import SqliteSpanStore

        self.project_dir = project_dir
        self.description = f"local traces in {project_dir / '.flux' / 'traces.db'}"
        self._store = SqliteSpanStore(project_dir / ".flux" / "traces.db")
        self._api = ObservabilityApi(self._store, settings=_project_settings(project_dir))

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        from functions.shared.apigw import HttpRequest, build_event

        request = HttpRequest("GET", API_SUFFIX + path, urlencode(_clean(params)))
        result = self._api.handle(build_event(request, route_key="$default"))
        body = json.loads(result.get("body") or "null")
        if result["statusCode"] >= 400:
            raise _error_from(result["statusCode"], body)
        return body

    def close(self) -> None:
        self._store.close()


def _project_settings(project_dir: Path) -> Any:
    """The project's ``observability`` settings, or None for the defaults.

    Only a project that sets the section pays for loading the manifest models; a
    missing or invalid section falls back to the defaults (reading traces must still work).
    """
    try:
        section = json.loads((project_dir / "flux.json").read_text(encoding="utf-8")).get("observability")
    except (OSError, ValueError, AttributeError):
        return None
    if not section:
        return None
    from pydantic import ValidationError

    from functions.shared.manifest import Observability

    try:
        return Observability.model_validate(section)
    except ValidationError:
        return None


# -- credentials --------------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Credentials:
    api_url: str
    key: str


def config_dir(env: Mapping[str, str] = os.environ) -> Path:
    if env.get("FLUX_CONFIG_DIR"):
        return Path(env["FLUX_CONFIG_DIR"])
    if env.get("XDG_CONFIG_HOME"):
        return Path(env["XDG_CONFIG_HOME"]) / "flux"
    return Path.home() / ".config" / "flux"


def credentials_path(env: Mapping[str, str] = os.environ) -> Path:
    return config_dir(env) / "credentials.json"


def save_credentials(credentials: Credentials, path: Path | None = None) -> Path:
    """Write the file with mode 0600 from the start (never world-readable, not even for a moment)."""
    path = path or credentials_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        os.fchmod(handle.fileno(), 0o600)
        json.dump({"api_url": credentials.api_url, "key": credentials.key}, handle)
    os.replace(tmp, path)
    return path


def load_credentials(path: Path | None = None) -> Credentials | None:
    path = path or credentials_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Credentials(str(data["api_url"]), str(data["key"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


# -- resolution ---------------------------------------------------------------------------------------------------

def find_project(start: Path) -> Path | None:
    """The nearest directory at or above ``start`` holding ``flux.json`` or ``.flux/``."""
    start = start.resolve()
    for folder in (start, *start.parents):
        if (folder / "flux.json").is_file() or (folder / ".flux").is_dir():
            return folder
    return None



def running_dev_server(project_dir: Path) -> str | None:
    """The URL of this project's ``flux dev`` if its dev.json names a live process that answers."""
    try:
        info = json.loads((project_dir / ".flux" / "dev.json").read_text(encoding="utf-8"))
        url, pid = str(info["url"]), int(info["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not pid_alive(pid):
        return None
    import httpx

    try:
        httpx.get(api_base(url) + "/openapi.json", timeout=PROBE_TIMEOUT_S)
    except httpx.HTTPError:
        return None
    return url


def resolve_client(*, api_url: str | None = None, project_dir: Path | None = None,
                   env: Mapping[str, str] = os.environ) -> ApiClient:
    saved = load_credentials(credentials_path(env))
    explicit = api_url or env.get("FLUX_API_URL")
    if explicit:
        key = env.get("FLUX_API_KEY") or (saved.key if saved and api_base(saved.api_url) == api_base(explicit)
                                          else None)
        return HttpApiClient(explicit, key=key)
    if saved is not None and project_dir is None:
        return HttpApiClient(saved.api_url, key=saved.key, description=f"hosted API at {api_base(saved.api_url)}")
    root = project_dir.resolve() if project_dir else find_project(Path.cwd())
    if root is None:
        raise ApiError(0, "no_api", "no Flux API found: run this inside a Flux project (or pass --project-dir), "
                                    "pass --api-url, set FLUX_API_URL, or run `flux login`")
    dev_url = running_dev_server(root)
    if dev_url:
        return HttpApiClient(dev_url, description=f"flux dev at {dev_url}")
    if (root / ".flux" / "traces.db").is_file():
        return InProcessClient(root)
    raise ApiError(0, "no_traces", f"no traces yet in {root}: start `flux dev` and send a request")
