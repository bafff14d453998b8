"""Neutron's security groups and their rules (``/v2.0/security-groups``,
``/v2.0/security-group-rules``), as Neutron makes and renders them.

Neutron gives every project a ``default`` group the first time the project uses the API: two
ingress rules that admit the group's own members (IPv4, IPv6, ``remote_group_id`` the group
itself) and two egress rules open to anywhere. Every other new group gets the two egress
rules only. Ports carry group ids (``security_groups``); Nova shows a server's groups by name,
gathered from its ports.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request

from sim.openstack import scenario as sc
from sim.openstack.errors import ApiError

DEFAULT_DESCRIPTION = "Default security group"
Groups = dict[str, "SecurityGroup"]


# state.py's own, repeated: state.py imports this module.
def new_id() -> str:
    return str(uuid.uuid4())


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


@dataclass
class Rule:
    id: str
    group_id: str
    project_id: str
    direction: str
    ethertype: str
    protocol: str | None = None
    port_range_min: int | None = None
    port_range_max: int | None = None
    remote_ip_prefix: str | None = None
    remote_group_id: str | None = None
    belongs_to_default_sg: bool = False
    created_at: str = field(default_factory=now)

    def json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "project_id": self.project_id,
            "tenant_id": self.project_id,
            "security_group_id": self.group_id,
            "direction": self.direction,
            "ethertype": self.ethertype,
            "protocol": self.protocol,
            "port_range_min": self.port_range_min,
            "port_range_max": self.port_range_max,
            "remote_ip_prefix": self.remote_ip_prefix,
            # Neutron fills it from remote_ip_prefix (the network of the prefix).
            "normalized_cidr": self.remote_ip_prefix,
            "remote_group_id": self.remote_group_id,
            "remote_address_group_id": None,
            "description": "",
            "belongs_to_default_sg": self.belongs_to_default_sg,
            "tags": [],
            "created_at": self.created_at,
            "updated_at": self.created_at,
            "revision_number": 0,
        }


@dataclass
class SecurityGroup:
    id: str
    name: str
    description: str
    project_id: str
    rules: list[Rule] = field(default_factory=list)
    created_at: str = field(default_factory=now)

    def json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "project_id": self.project_id,
            "tenant_id": self.project_id,
            "stateful": True,
            "shared": False,
            "security_group_rules": [r.json() for r in self.rules],
            "tags": [],
            "created_at": self.created_at,
            "updated_at": self.created_at,
            # Each rule added bumps the group's revision, as in Neutron.
            "revision_number": len(self.rules),
        }


def _egress(group: SecurityGroup, default: bool) -> list[Rule]:
    return [
        Rule(new_id(), group.id, group.project_id, "egress", eth, belongs_to_default_sg=default)
        for eth in ("IPv4", "IPv6")
    ]


def default_group(groups: Groups, project_id: str) -> SecurityGroup:
    """The project's ``default`` group, made as Neutron makes it when first needed."""
    for g in groups.values():
        if g.project_id == project_id and g.name == "default":
            return g
    g = SecurityGroup(new_id(), "default", DEFAULT_DESCRIPTION, project_id)
    g.rules = [
        Rule(new_id(), g.id, project_id, "ingress", eth, remote_group_id=g.id,
             belongs_to_default_sg=True)
        for eth in ("IPv4", "IPv6")
    ] + _egress(g, True)  # fmt: skip
    groups[g.id] = g
    return g


def add_group(groups: Groups, spec: sc.SecurityGroup, project_id: str) -> SecurityGroup:
    if spec.name == "default":
        raise ValueError("security group 'default' is Neutron's own: do not list it")
    g = SecurityGroup(new_id(), spec.name, spec.description, project_id)
    g.rules = _egress(g, False) + [
        Rule(new_id(), g.id, project_id, r.direction, r.ethertype, r.protocol,
             r.port_range_min, r.port_range_max, r.remote_ip_prefix)
        for r in spec.rules
    ]  # fmt: skip
    groups[g.id] = g
    return g


def group_ids(groups: Groups, names: list[str], project_id: str) -> list[str]:
    """The ids of the project's groups named ``names`` (``ValueError`` for an unknown one)."""
    default_group(groups, project_id)
    ids = []
    for name in names:
        found = [g.id for g in groups.values() if g.project_id == project_id and g.name == name]
        if not found:
            raise ValueError(f"no security group named {name!r} in the scenario")
        ids.append(found[0])
    return ids


def add_routes(
    app: FastAPI,
    all_groups: Groups,
    prefix: str,
    filtered: Callable[[list[dict[str, Any]], Request], list[dict[str, Any]]],
) -> None:
    """``GET`` of groups and rules, with Neutron's equality filters (``filtered``: ``name``,
    ``project_id``, ``security_group_id``, ``direction``...)."""

    def groups() -> list[SecurityGroup]:
        return list(all_groups.values())

    @app.get(prefix + "/security-groups")
    async def security_groups(request: Request) -> dict[str, Any]:
        return {"security_groups": filtered([g.json() for g in groups()], request)}

    @app.get(prefix + "/security-groups/{gid}")
    async def security_group(gid: str) -> dict[str, Any]:
        g = all_groups.get(gid)
        if g is None:
            raise ApiError(404, "SecurityGroupNotFound", f"Security group {gid} does not exist")
        return {"security_group": g.json()}

    @app.get(prefix + "/security-group-rules")
    async def security_group_rules(request: Request) -> dict[str, Any]:
        rules = [r.json() for g in groups() for r in g.rules]
        return {"security_group_rules": filtered(rules, request)}

    @app.get(prefix + "/security-group-rules/{rid}")
    async def security_group_rule(rid: str) -> dict[str, Any]:
        for g in groups():
            for r in g.rules:
                if r.id == rid:
                    return {"security_group_rule": r.json()}
        raise ApiError(
            404, "SecurityGroupRuleNotFound", f"Security group rule {rid} does not exist"
        )
