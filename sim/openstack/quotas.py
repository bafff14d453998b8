"""Quotas and limits as Nova, Cinder and Neutron answer them (``openstack quota show``,
``openstack limits show``): ``/os-quota-sets/{project}`` (Nova's ``/detail`` and Cinder's
``?usage=true`` with ``in_use``), Neutron's ``/v2.0/quotas/{project}`` (``/details`` with
``used``), and both ``/limits``.

Limits are the services' shipped defaults, with the scenario's ``quotas`` over them; Cinder's
``volumes`` is the scenario's ``volume_quota`` (or the ``volume_quota`` fault) and ``-1``
(unlimited) when neither is set, because it is the one limit the simulator enforces: the
document and the 413 ``create_volume`` answers count the same volumes of the same project,
so they tell the same story. Usage counts the caller's project's objects only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request

from sim.openstack.errors import ApiError
from sim.openstack.state import CloudState

if TYPE_CHECKING:  # api.py imports this module
    from sim.openstack.api import Sim

# nova/conf/quota.py
NOVA_DEFAULTS = {
    "instances": 10, "cores": 20, "ram": 51200, "metadata_items": 128, "key_pairs": 100,
    "server_groups": 10, "server_group_members": 10, "injected_files": 5,
    "injected_file_content_bytes": 10240, "injected_file_path_bytes": 255,
}  # fmt: skip
# Nova's proxies of Neutron's quotas, shown before microversion 2.36 only.
NOVA_NETWORK_PROXIES = {
    "floating_ips": 10, "fixed_ips": -1, "security_groups": 10, "security_group_rules": 20,
}  # fmt: skip
INJECTED = ("injected_files", "injected_file_content_bytes", "injected_file_path_bytes")
# cinder/quota.py (quota_volumes... per_volume_size_limit)
CINDER_DEFAULTS = {
    "volumes": 10, "snapshots": 10, "gigabytes": 1000, "backups": 10,
    "backup_gigabytes": 1000, "per_volume_gigabytes": -1, "groups": 10,
}  # fmt: skip
# neutron/conf/quota.py
NEUTRON_DEFAULTS = {
    "network": 100, "subnet": 100, "subnetpool": -1, "port": 500, "router": 10,
    "floatingip": 50, "security_group": 10, "security_group_rule": 100, "rbac_policy": 10,
}  # fmt: skip


def nova_microversion(request: Request, maximum: str) -> tuple[int, int]:
    """The compute microversion asked for (``OpenStack-API-Version`` or the legacy
    header; ``latest`` is the maximum, none is 2.1), as Nova picks the body's shape."""
    asked = request.headers.get("OpenStack-API-Version", "")
    value = asked.split()[1] if asked.startswith("compute ") and len(asked.split()) > 1 else ""
    value = value or request.headers.get("X-OpenStack-Nova-API-Version", "") or "2.1"
    if value == "latest":
        value = maximum
    major, _, minor = value.partition(".")
    try:
        return int(major), int(minor or 0)
    except ValueError:
        return 2, 1


def volume_limit(sim: Sim) -> int:
    """Cinder's ``volumes`` limit: what ``create_volume`` enforces."""
    limit = sim.faults.volume_quota
    if limit is None:
        limit = sim.state.volume_quota
    return -1 if limit is None else limit


def volumes_in_use(st: CloudState, project: str) -> int:
    return sum(1 for v in st.volumes.values() if v.project_id == project)


def check_volume_quota(sim: Sim, project: str) -> None:
    """Cinder's 413 when one more volume would pass the ``volumes`` quota."""
    limit = volume_limit(sim)
    if limit >= 0 and volumes_in_use(sim.state, project) + 1 > limit:
        sim.faults.injected.append("quota:volumes")
        raise ApiError(
            413,
            "overLimit",
            f"VolumeLimitExceeded: Maximum number of volumes "
            f"allowed ({limit}) exceeded for quota 'volumes'.",
        )


def _mine(request: Request, project: str) -> None:
    """A project's quota is for its own members and admins (403 otherwise), as the
    services' default policies have it."""
    if project != request.state.project and "admin" not in request.state.roles:
        raise ApiError(403, "forbidden", f"Policy doesn't allow quota show for project {project}.")


def nova_quotas(sim: Sim, project: str) -> dict[str, tuple[int, int]]:
    """Nova's (limit, in_use) per resource."""
    st = sim.state
    servers = [s for s in st.servers.values() if s.project_id == project and s.deleted_at is None]
    used = {
        "instances": len(servers),
        "cores": sum(s.flavor.vcpus for s in servers),
        "ram": sum(s.flavor.ram for s in servers),
    }
    limits = {**NOVA_DEFAULTS, **NOVA_NETWORK_PROXIES, **st.quotas.get("compute", {})}
    # Nova counts keypairs per user, so a project's key_pairs in_use is always 0.
    return {k: (v, used.get(k, 0)) for k, v in limits.items()}


def cinder_quotas(sim: Sim, project: str) -> dict[str, tuple[int, int]]:
    """Cinder's (limit, in_use) per resource, with its per-volume-type ones."""
    st = sim.state
    vols = [v for v in st.volumes.values() if v.project_id == project]
    snaps = [s for s in st.snapshots.values() if s.project_id == project]
    snap_gib = {s.id: s.json()["size"] for s in snaps}
    vol_type = {
        s.id: st.volumes[s.volume_id].volume_type for s in snaps if s.volume_id in st.volumes
    }
    overrides = st.quotas.get("volume", {})
    out: dict[str, tuple[int, int]] = {}
    for k, v in CINDER_DEFAULTS.items():
        out[k] = (overrides.get(k, v), 0)
    out["volumes"] = (volume_limit(sim), len(vols))
    out["snapshots"] = (out["snapshots"][0], len(snaps))
    # Snapshots count against gigabytes too (Cinder's no_snapshot_gb_quota is off).
    out["gigabytes"] = (
        out["gigabytes"][0],
        sum(v.size_gib for v in vols) + sum(snap_gib.values()),
    )
    for t in st.volume_types.values():
        name = t["name"]
        typed = [v for v in vols if v.volume_type == name]
        typed_snaps = [s for s in snaps if vol_type.get(s.id) == name]
        out[f"volumes_{name}"] = (overrides.get(f"volumes_{name}", -1), len(typed))
        out[f"snapshots_{name}"] = (overrides.get(f"snapshots_{name}", -1), len(typed_snaps))
        out[f"gigabytes_{name}"] = (
            overrides.get(f"gigabytes_{name}", -1),
            sum(v.size_gib for v in typed) + sum(snap_gib[s.id] for s in typed_snaps),
        )
    return out


def neutron_quotas(sim: Sim, project: str) -> dict[str, tuple[int, int]]:
    st = sim.state
    groups = [g for g in st.security_groups.values() if g.project_id == project]
    used = {
        "network": sum(1 for n in st.networks.values() if n.project_id == project),
        "subnet": sum(1 for n in st.networks.values() if n.subnet["project_id"] == project),
        "port": sum(1 for p in st.ports.values() if p.project_id == project),
        "security_group": len(groups),
        "security_group_rule": sum(len(g.rules) for g in groups),
    }
    limits = {**NEUTRON_DEFAULTS, **st.quotas.get("network", {})}
    return {k: (v, used.get(k, 0)) for k, v in limits.items()}


def add_routes(app: FastAPI, sim: Sim, nova: str, cinder: str, neutron: str, nova_max: str) -> None:
    def nova_shape(request: Request, quotas: dict[str, Any]) -> dict[str, Any]:
        version = nova_microversion(request, nova_max)
        drop = set(NOVA_NETWORK_PROXIES) if version >= (2, 36) else set()
        if version >= (2, 57):
            drop |= set(INJECTED)
        return {k: v for k, v in quotas.items() if k not in drop}

    @app.get(nova + "/os-quota-sets/{project}")
    async def nova_quota_set(project: str, request: Request) -> dict[str, Any]:
        _mine(request, project)
        limits = {k: v[0] for k, v in nova_quotas(sim, project).items()}
        return {"quota_set": {"id": project, **nova_shape(request, limits)}}

    @app.get(nova + "/os-quota-sets/{project}/detail")
    async def nova_quota_detail(project: str, request: Request) -> dict[str, Any]:
        _mine(request, project)
        detail = {
            k: {"limit": limit, "in_use": used, "reserved": 0}
            for k, (limit, used) in nova_quotas(sim, project).items()
        }
        return {"quota_set": {"id": project, **nova_shape(request, detail)}}

    @app.get(nova + "/os-quota-sets/{project}/defaults")
    async def nova_quota_defaults(project: str, request: Request) -> dict[str, Any]:
        defaults = {**NOVA_DEFAULTS, **NOVA_NETWORK_PROXIES}
        return {"quota_set": {"id": project, **nova_shape(request, defaults)}}

    @app.get(nova + "/limits")
    async def nova_limits(request: Request) -> dict[str, Any]:
        project = request.query_params.get("tenant_id") or request.state.project
        q = nova_quotas(sim, project)
        absolute = {
            "maxTotalInstances": q["instances"][0],
            "maxTotalCores": q["cores"][0],
            "maxTotalRAMSize": q["ram"][0],
            "maxServerMeta": q["metadata_items"][0],
            "maxTotalKeypairs": q["key_pairs"][0],
            "maxServerGroups": q["server_groups"][0],
            "maxServerGroupMembers": q["server_group_members"][0],
            "totalInstancesUsed": q["instances"][1],
            "totalCoresUsed": q["cores"][1],
            "totalRAMUsed": q["ram"][1],
            "totalServerGroupsUsed": 0,
        }
        version = nova_microversion(request, nova_max)
        if version < (2, 57):
            absolute["maxPersonality"] = q["injected_files"][0]
            absolute["maxPersonalitySize"] = q["injected_file_content_bytes"][0]
        if version < (2, 39):
            absolute["maxImageMeta"] = q["metadata_items"][0]
        if version < (2, 36):
            absolute |= {
                "maxSecurityGroups": q["security_groups"][0],
                "maxSecurityGroupRules": q["security_group_rules"][0],
                "maxTotalFloatingIps": q["floating_ips"][0],
                "totalSecurityGroupsUsed": 0,
                "totalFloatingIpsUsed": 0,
            }
        return {"limits": {"rate": [], "absolute": absolute}}

    @app.get(cinder + "/os-quota-sets/{project}")
    async def cinder_quota_set(project: str, request: Request) -> dict[str, Any]:
        _mine(request, project)
        quotas = cinder_quotas(sim, project)
        if request.query_params.get("usage", "false").lower() in ("true", "1"):
            body: dict[str, Any] = {
                k: {"limit": limit, "in_use": used, "reserved": 0}
                for k, (limit, used) in quotas.items()
            }
        else:
            body = {k: limit for k, (limit, _) in quotas.items()}
        return {"quota_set": {"id": project, **body}}

    @app.get(cinder + "/os-quota-sets/{project}/defaults")
    async def cinder_quota_defaults(project: str) -> dict[str, Any]:
        defaults: dict[str, int] = dict(CINDER_DEFAULTS)
        for t in sim.state.volume_types.values():
            for kind in ("volumes", "snapshots", "gigabytes"):
                defaults[f"{kind}_{t['name']}"] = -1
        return {"quota_set": {"id": project, **defaults}}

    @app.get(cinder + "/limits")
    async def cinder_limits(request: Request) -> dict[str, Any]:
        q = cinder_quotas(sim, request.state.project)
        absolute = {
            "maxTotalVolumes": q["volumes"][0],
            "maxTotalSnapshots": q["snapshots"][0],
            "maxTotalVolumeGigabytes": q["gigabytes"][0],
            "maxTotalBackups": q["backups"][0],
            "maxTotalBackupGigabytes": q["backup_gigabytes"][0],
            "totalVolumesUsed": q["volumes"][1],
            "totalSnapshotsUsed": q["snapshots"][1],
            "totalGigabytesUsed": q["gigabytes"][1],
            "totalBackupsUsed": 0,
            "totalBackupGigabytesUsed": 0,
        }
        return {"limits": {"rate": [], "absolute": absolute}}

    @app.get(neutron + "/quotas/{project}")
    async def neutron_quota(project: str, request: Request) -> dict[str, Any]:
        _mine(request, project)
        return {"quota": {k: limit for k, (limit, _) in neutron_quotas(sim, project).items()}}

    @app.get(neutron + "/quotas/{project}/details")
    async def neutron_quota_details(project: str, request: Request) -> dict[str, Any]:
        _mine(request, project)
        return {
            "quota": {
                k: {"limit": limit, "used": used, "reserved": 0}
                for k, (limit, used) in neutron_quotas(sim, project).items()
            }
        }

    @app.get(neutron + "/quotas/{project}/default")
    async def neutron_quota_default(project: str) -> dict[str, Any]:
        return {"quota": dict(NEUTRON_DEFAULTS)}
