"""The openstack CLI (python-openstackclient, installed in .venv-openstack from
sim/openstack/requirements.txt) against the simulated cloud, as an administrator uses it:
every command the issue found answering 404 now answers as a real cloud does."""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

import pytest

from sim.openstack import keystone_glance as kg
from sim.openstack.cloud import Cloud


def openstack(cloud: Cloud, *args: str) -> Any:
    cli = kg.openstack_venv() / "bin" / "openstack"
    if not cli.is_file():
        pytest.skip("python-openstackclient is not in .venv-openstack: run `make setup`")
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "OS_AUTH_URL": cloud.auth_url,
        "OS_USERNAME": cloud.scenario.user,
        "OS_PASSWORD": cloud.scenario.password,
        "OS_PROJECT_NAME": cloud.scenario.project,
        "OS_USER_DOMAIN_ID": "default",
        "OS_PROJECT_DOMAIN_ID": "default",
        "OS_REGION_NAME": kg.REGION,
        "OS_CACERT": str(cloud.ca_file),
        "OS_IDENTITY_API_VERSION": "3",
    }
    done = subprocess.run(
        [str(cli), *args, "-f", "json"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"openstack {' '.join(args)}: {done.stderr}"
    return json.loads(done.stdout or "null")


def test_quotas_and_limits(cloud: Cloud) -> None:
    quota = {row["Resource"]: row["Limit"] for row in openstack(cloud, "quota", "show")}
    assert (quota["instances"], quota["cores"], quota["ram"]) == (10, 20, 51200)
    assert quota["volumes"] == -1  # the scenario sets no volume quota
    limits = {row["Name"]: row["Value"] for row in openstack(cloud, "limits", "show", "--absolute")}
    assert limits["max_total_instances"] == 10
    assert limits["instances_used"] == len(
        [s for s in cloud.state.servers.values() if s.deleted_at is None]
    )


def test_security_groups_keypairs_zones_and_images(cloud: Cloud) -> None:
    groups = {row["Name"] for row in openstack(cloud, "security", "group", "list")}
    assert "default" in groups
    assert {s.name for s in cloud.scenario.security_groups} <= groups
    keys = {row["Name"] for row in openstack(cloud, "keypair", "list")}
    assert {s.key_name for s in cloud.scenario.servers if s.key_name} <= keys
    zones = openstack(cloud, "availability", "zone", "list", "--compute")
    assert [(z["Zone Name"], z["Zone Status"]) for z in zones][:1] == [("nova", "available")]
    images = {row["ID"]: row for row in openstack(cloud, "image", "list")}
    imaged = [s for s in cloud.state.servers.values() if s.boot == "image" and s.image_id]
    assert imaged, "the scenario has an image-backed server"
    for server in imaged:
        assert images[server.image_id]["Status"] == "active"
