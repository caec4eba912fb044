"""The packaged manifest: the Project :func:`~functions.shared.manifest.load_project` validated, as JSON.

The packaging step (infra/packaging.py) writes it into the bundled project; a Lambda
reads it back in its INIT without pydantic. Importing pydantic and defining the
manifest's models cost a runtime Lambda ~60-75 ms of INIT, more than half of its
handler import (bench/PROFILE.md §7), for a manifest that was validated
at packaging time and cannot change in a read-only ``/var/task``.

What this module reads back is a tree of read-only records with the models' field
names, values and behaviour (:class:`FunctionSpecRules` and its peers are shared
with the pydantic models), not the models themselves: code on the Lambda path reads
a project's attributes and never validates, copies or dumps it.

The JSON keeps what plain JSON loses: a model is ``{"$model": name, "$fields": {...}}``,
a path ``{"$path": "relative/to/root"}``, a tuple ``{"$tuple": [...]}``, and a dict
whose keys could be mistaken for these (``$ref`` in an input schema) ``{"$dict": {...}}``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from functions.shared.errors import FluxError

if TYPE_CHECKING:
    from functions.shared.manifest import Project

BUNDLE_NAME = ".flux-project.json"
BUNDLE_FORMAT = 2


class BundleError(FluxError):
    """A packaged manifest this code cannot read (written by another format version)."""

    status, code = 500, "invalid_bundle"


def route_key(method: str, route: str) -> str:
    """``"METHOD /route"``, the key API Gateway routes on and every layer looks a function up by."""
    return f"{method} {route}"


class FunctionSpecRules:
    """What a function spec derives from its fields (the model and the packaged record share it).

    The fields are declared for type checkers only: at run time, annotations here would be taken
    for fields of the pydantic models that inherit these rules.
    """

    if TYPE_CHECKING:
        config: Any
        method: str
        route: str

    @property
    def is_async(self) -> bool:
        return bool(self.config.async_)

    @property
    def route_key(self) -> str:
        """API Gateway's ``routeKey`` for this function (``"GET /orders/{id}"``)."""
        return route_key(self.method, self.route)

    @property
    def internal(self) -> bool:
        return bool(self.config.internal)

    @property
    def pushes(self) -> tuple[str, ...]:
        """The async functions ``ctx.queue.push`` may target (flux.json ``pushes``)."""
        return tuple(self.config.pushes)

    @property
    def invokes(self) -> tuple[str, ...]:
        """The functions ``ctx.function.invoke`` may call (flux.json ``invokes``)."""
        return tuple(self.config.invokes)


class ProjectRules:
    if TYPE_CHECKING:
        functions: Mapping[str, Any]

    def function(self, name: str) -> Any:
        return self.functions[name]


class DatabaseRules:
    if TYPE_CHECKING:
        app_role: str | bool

    @property
    def app_role_name(self) -> str | None:
        """The application role's name; None when the project opted out (``"app_role": false``)."""
        return self.app_role if isinstance(self.app_role, str) else None


class ProjectConfigRules:
    if TYPE_CHECKING:
        stages: Mapping[str, Any]

    def stage_profile(self, stage: str) -> Literal["dev", "prod"]:
        """The profile of ``stage``: flux.json ``stages.<stage>.profile``, else prod for "prod", dev otherwise."""
        settings = self.stages.get(stage)
        if settings is not None:
            return cast(Literal["dev", "prod"], settings.profile)
        return "prod" if stage == "prod" else "dev"


class Record:
    """A packaged model: its fields as read-only attributes."""

    def __init__(self, fields: dict[str, Any]) -> None:
        object.__setattr__(self, "__dict__", fields)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only")

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and vars(other) == vars(self)

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(vars(self))))

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={value!r}" for name, value in vars(self).items())
        return f"{type(self).__name__}({shown})"


# The models with behaviour get it on their records too.
_RULES: dict[str, type] = {"FunctionSpec": FunctionSpecRules, "Project": ProjectRules, "Database": DatabaseRules,
                           "ProjectConfig": ProjectConfigRules}
_RECORDS: dict[str, type[Record]] = {}


def _record_class(model: str) -> type[Record]:
    """The record class for a model name (named after it, so a record's repr says what it is)."""
    cls = _RECORDS.get(model)
    if cls is None:
        rules = _RULES.get(model)
        cls = type(model, (rules, Record) if rules else (Record,), {"__doc__": f"A packaged {model}."})
        _RECORDS[model] = cls
    return cls


_MARKERS = ("$model", "$fields", "$path", "$tuple", "$dict")


def dump_bundle(project: Project) -> str:
    """The validated ``project`` as the JSON :func:`load_bundle` reads; paths relative to its root."""
    return json.dumps({"format": BUNDLE_FORMAT, "project": _dump(project, project.root)}, sort_keys=True)


def load_bundle(root: str | Path) -> Project:
    """The Project :func:`dump_bundle` wrote to ``<root>/.flux-project.json``, rooted at ``root``, not validated.

    Only for a bundle the packaging step wrote from a Project that ``load_project`` validated. The result
    is read-only records shaped like the models (see the module's docstring), hence the cast.
    """
    root = Path(root).resolve()
    document = json.loads((root / BUNDLE_NAME).read_text(encoding="utf-8"))
    if document.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{BUNDLE_NAME}: format {document.get('format')!r}, expected {BUNDLE_FORMAT}; "
                          "package the project again (flux deploy)")
    return cast("Project", _load(document["project"], root))


def load_packaged_project(root: str | Path) -> Project:
    """:func:`load_bundle` when the packaging step left one under ``root``, else the validated project."""
    if (Path(root) / BUNDLE_NAME).is_file():
        return load_bundle(root)
    from functions.shared.manifest import load_project

    return load_project(root)


def _dump(value: Any, root: Path) -> Any:
    fields = getattr(type(value), "model_fields", None)  # a pydantic model, recognised without importing pydantic
    if fields is None and isinstance(value, Record):
        fields = vars(value)  # a bundle read back dumps as the JSON it was read from
    if fields is not None:
        return {"$model": type(value).__name__,
                "$fields": {name: _dump(getattr(value, name), root) for name in fields}}
    if isinstance(value, Path):
        return {"$path": str(value.relative_to(root))}
    if isinstance(value, tuple):
        return {"$tuple": [_dump(item, root) for item in value]}
    if isinstance(value, list):
        return [_dump(item, root) for item in value]
    if isinstance(value, dict):
        plain = {key: _dump(item, root) for key, item in value.items()}
        return {"$dict": plain} if any(key in _MARKERS for key in value) else plain
    return value


def _load(value: Any, root: Path) -> Any:
    if isinstance(value, list):
        return [_load(item, root) for item in value]
    if not isinstance(value, dict):
        return value
    if "$model" in value:
        fields = {name: _load(item, root) for name, item in value["$fields"].items()}
        return _record_class(value["$model"])(fields)
    if "$path" in value:
        return root / value["$path"]
    if "$tuple" in value:
        return tuple(_load(item, root) for item in value["$tuple"])
    if "$dict" in value:
        value = value["$dict"]
    return {key: _load(item, root) for key, item in value.items()}
