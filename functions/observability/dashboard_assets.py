"""Serves the dashboard: plain HTML, JS and CSS files from ``dashboard/``, no build step, no CDN.

The HTML is a template with two placeholders, the dashboard's base path and the
API path, filled in at serve time so the same files work under ``flux dev``
(``/_flux/``) and behind the hosted API. Only files that exist in the folder
with a known type are served, so a path can never escape it.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

ASSETS_DIR = Path(__file__).parent / "dashboard"
_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
          ".svg": "image/svg+xml", ".html": "text/html; charset=utf-8"}
_ASSET_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*\.(?:js|css|svg)$")


class DashboardAssets:
    def __init__(self, base_path: str, api_path: str, directory: Path = ASSETS_DIR) -> None:
        self.base_path = base_path.rstrip("/")
        self.api_path = api_path.rstrip("/")
        self.directory = directory
        self._cache: dict[str, str] = {}

    def _read(self, name: str) -> str:
        if name not in self._cache:
            self._cache[name] = (self.directory / name).read_text(encoding="utf-8")
        return self._cache[name]

    def matches(self, path: str) -> bool:
        return path == self.base_path or path.startswith(self.base_path + "/")

    def serve(self, path: str, request_id: str) -> dict[str, Any] | None:
        """The proxy result for a dashboard path, or None if there is no such file."""
        rest = path[len(self.base_path):]
        if rest in ("", "/", "/index.html"):
            page = self._read("index.html")
            page = page.replace("__FLUX_BASE__", html.escape(self.base_path + "/"))
            page = page.replace("__FLUX_API__", html.escape(self.api_path))
            return self._result(page, ".html", request_id)
        if rest.startswith("/assets/"):
            name = rest[len("/assets/"):]
            if _ASSET_NAME.match(name) and (self.directory / name).is_file():
                return self._result(self._read(name), Path(name).suffix, request_id)
        return None

    @staticmethod
    def _result(body: str, suffix: str, request_id: str) -> dict[str, Any]:
        return {
            "statusCode": 200,
            "headers": {"content-type": _TYPES[suffix], "x-request-id": request_id, "cache-control": "no-cache",
                        "x-content-type-options": "nosniff"},
            "body": body,
            "isBase64Encoded": False,
        }
