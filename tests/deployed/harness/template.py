"""A synthesized CloudFormation template, with its intrinsic functions resolved to emulated resources.

What CloudFormation itself does between ``cdk deploy`` and a running stack, reduced to
what a Flux stack uses: physical names for resources that do not set one
(``<stack>-<logical id>-<suffix>``, as CloudFormation generates them), ``Ref`` and
``Fn::GetAtt`` per resource type as the CloudFormation resource reference documents
them (a table's ``Ref`` is its name, a queue's is its URL, a secret target
attachment's is the secret's ARN, ...), the pseudo parameters, template parameters
(with their defaults), and ``Fn::Join``, ``Fn::Sub``, ``Fn::Select``, ``Fn::Split``,
``Fn::GetAZs``, ``Fn::If`` with ``Conditions``, ``Fn::Equals/Not/And/Or``.

The services layer fills in what only exists once a resource is created (a queue's URL,
a secret's ARN with its random suffix, the API's endpoint) with :meth:`Stack.set`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REGION = "us-east-1"
ACCOUNT = "123456789012"
_SUB = re.compile(r"\$\{([^}!][^}]*)\}")


class UnresolvedReference(KeyError):
    """A Ref/GetAtt whose target the emulation has not created (yet)."""


@dataclass
class Stack:
    template: dict[str, Any]
    name: str
    assembly: Path
    parameters: dict[str, str] = field(default_factory=dict)
    region: str = REGION
    account: str = ACCOUNT
    _attrs: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, assembly: Path, name: str, parameters: Mapping[str, str] | None = None) -> Stack:
        template = json.loads((assembly / f"{name}.template.json").read_text())
        return cls(template, name, assembly, dict(parameters or {}))

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        return self.template["Resources"]

    def of_type(self, kind: str) -> dict[str, dict[str, Any]]:
        return {lid: r for lid, r in self.resources.items() if r["Type"] == kind}

    def generated_name(self, logical_id: str, *, max_length: int = 64, suffix: str = "") -> str:
        """``<stack>-<logical id>-<13 chars>`` truncated as CloudFormation does, stable per stack."""
        digest = hashlib.sha256(f"{self.name}/{logical_id}".encode()).hexdigest()[:13].upper()
        room = max_length - len(digest) - len(suffix) - 2
        head = f"{self.name}-{logical_id}"[:room]
        return f"{head}-{digest}{suffix}"

    def set(self, logical_id: str, **attrs: Any) -> None:
        self._attrs.setdefault(logical_id, {}).update(attrs)

    def attr(self, logical_id: str, name: str) -> Any:
        try:
            return self._attrs[logical_id][name]
        except KeyError:
            raise UnresolvedReference(f"{logical_id}.{name}") from None

    def arn(self, service: str, resource: str) -> str:
        return f"arn:aws:{service}:{self.region}:{self.account}:{resource}"

    def physical_property(self, logical_id: str, prop: str) -> Any:
        value = self.resources[logical_id].get("Properties", {}).get(prop)
        return None if value is None else self.resolve(value)

    # -- intrinsic functions ---------------------------------------------------------------------

    def condition(self, name: str) -> bool:
        return bool(self.resolve(self.template.get("Conditions", {})[name]))

    def _ref(self, name: str) -> Any:
        pseudo = {"AWS::Region": self.region, "AWS::AccountId": self.account, "AWS::Partition": "aws",
                  "AWS::StackName": self.name, "AWS::URLSuffix": "amazonaws.com",
                  "AWS::StackId": self.arn("cloudformation", f"stack/{self.name}/00000000-0000-0000-0000-000000000000"),
                  "AWS::NoValue": None}
        if name in pseudo:
            return pseudo[name]
        if name in self.template.get("Parameters", {}):
            if name in self.parameters:
                return self.parameters[name]
            default = self.template["Parameters"][name].get("Default")
            if default is None:
                raise UnresolvedReference(f"parameter {name} has no value and no default")
            return default
        return self.attr(name, "Ref")

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [v for v in (self.resolve(item) for item in value) if v is not None]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            key, arg = next(iter(value.items()))
            if key == "Ref":
                return self._ref(arg)
            if key == "Fn::GetAtt":
                logical_id, name = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.attr(logical_id, name)
            if key == "Fn::Join":
                sep, items = arg
                return sep.join(str(v) for v in self.resolve(items))
            if key == "Fn::Sub":
                return self._sub(arg)
            if key == "Fn::Select":
                index, items = arg
                return self.resolve(items)[int(self.resolve(index))]
            if key == "Fn::Split":
                sep, text = arg
                return str(self.resolve(text)).split(sep)
            if key == "Fn::GetAZs":
                return [f"{self.region}a", f"{self.region}b", f"{self.region}c"]
            if key == "Fn::If":
                name, yes, no = arg
                return self.resolve(yes if self.condition(name) else no)
            if key == "Fn::Equals":
                left, right = self.resolve(arg)
                return left == right
            if key == "Fn::Not":
                return not self.resolve(arg[0])
            if key == "Fn::And":
                return all(self.resolve(arg))
            if key == "Fn::Or":
                return any(self.resolve(arg))
            if key == "Condition":
                return self.condition(arg)
            if key == "Fn::Base64":
                import base64

                return base64.b64encode(str(self.resolve(arg)).encode()).decode()
        return {k: self.resolve(v) for k, v in value.items()}

    def _sub(self, arg: Any) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(arg[1]))

        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return str(variables[name])
            if "." in name and not name.startswith("AWS::"):
                logical_id, attr = name.split(".", 1)
                return str(self.attr(logical_id, attr))
            return str(self._ref(name))

        return _SUB.sub(one, text).replace("${!", "${")

    def outputs(self) -> dict[str, str]:
        """The stack's outputs, as ``cdk deploy --outputs-file`` writes them."""
        return {key: str(self.resolve(spec["Value"])) for key, spec in self.template.get("Outputs", {}).items()}

    def asset_path(self, code: Mapping[str, Any]) -> Path:
        """The cloud assembly folder behind a Lambda ``Code``/``Content`` (its S3 key is ``<hash>.zip``)."""
        key = str(self.resolve(code["S3Key"]))
        manifest = json.loads((self.assembly / f"{self.name}.assets.json").read_text())
        entry = manifest["files"][key.removesuffix(".zip")]
        if entry["source"].get("packaging") != "zip":
            raise ValueError(f"asset {key}: a Lambda asset must be a zip (directory) asset")
        return self.assembly / entry["source"]["path"]
