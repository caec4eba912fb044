"""IAM policy evaluation for the template's Lambda roles: may this role make this call on this resource?

moto's server does not enforce IAM, so a missing grant never fails a call in the
emulation. This module answers the question IAM would, from the role's policies in
the deployed template (resolved with the emulated physical names and ARNs), with
IAM's rules for what it supports: an explicit Deny wins, otherwise any Allow whose
``Action`` and ``Resource`` match (``*`` and ``?`` wildcards, case-insensitive
actions) allows. ``NotAction``/``NotResource``, managed policies and conditions are
not evaluated: a statement that would decide a call with one of them raises
:class:`NotImplementedError` instead of guessing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from tests.deployed.harness.template import Stack


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _matches(pattern: str, value: str, *, case: bool) -> bool:
    """IAM wildcards: ``*`` any run of characters (``/`` and ``:`` included), ``?`` one character."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, 0 if case else re.IGNORECASE) is not None


@dataclass(frozen=True)
class RolePolicy:
    role: str
    statements: tuple[dict[str, Any], ...]

    @classmethod
    def of_role(cls, stack: Stack, role: str) -> RolePolicy:
        resource = stack.resources[role]
        if resource["Properties"].get("ManagedPolicyArns"):
            raise NotImplementedError(f"{role} has managed policies, which this evaluator cannot read")
        found: list[dict[str, Any]] = []
        for inline in resource["Properties"].get("Policies", []):
            found.extend(inline["PolicyDocument"]["Statement"])
        for policy in stack.of_type("AWS::IAM::Policy").values():
            if {"Ref": role} in policy["Properties"].get("Roles", []):
                found.extend(policy["Properties"]["PolicyDocument"]["Statement"])
        return cls(role, tuple(stack.resolve(s) for s in found))

    @classmethod
    def of_function(cls, stack: Stack, function: str, handler_suffix: str = "entry_http.handler") -> RolePolicy:
        """The role of the runtime Lambda of Flux function ``function`` (its HTTP entry by default)."""
        for resource in stack.of_type("AWS::Lambda::Function").values():
            props = resource["Properties"]
            if props.get("Environment", {}).get("Variables", {}).get("FLUX_FUNCTION") == function and \
                    props["Handler"].endswith(handler_suffix):
                return cls.of_role(stack, props["Role"]["Fn::GetAtt"][0])
        raise KeyError(f"no Lambda runs function {function!r} with {handler_suffix}")

    def _applies(self, statement: dict[str, Any], action: str, resource: str) -> bool:
        if "NotAction" in statement or "NotResource" in statement:
            raise NotImplementedError(f"{self.role}: NotAction/NotResource are not evaluated")
        if not any(_matches(a, action, case=False) for a in _as_list(statement.get("Action", []))):
            return False
        if not any(_matches(str(r), resource, case=True) for r in _as_list(statement.get("Resource", []))):
            return False
        if statement.get("Condition"):
            raise NotImplementedError(f"{self.role}: a statement with a condition decides {action} on {resource}")
        return True

    def allows(self, action: str, resource: str) -> bool:
        applicable = [s for s in self.statements if self._applies(s, action, resource)]
        if any(s.get("Effect") == "Deny" for s in applicable):
            return False
        return any(s.get("Effect") == "Allow" for s in applicable)

