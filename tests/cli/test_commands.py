"""``hoist providers``, ``maps`` and ``plans`` against the real services: the certificate
prompt, precise API errors, flags and YAML bodies, JSON output, exit codes."""

from __future__ import annotations

import socket
from pathlib import Path

import yaml

from sim.ovirt.engine import Engine
from tests.cli.conftest import Hoist, cli_env, run_cli
from tests.inventory.conftest import unique
from tests.planner.conftest import NAMESPACE
from tools.processes import ServiceProcess


def _plain(fingerprint: str) -> str:
    return fingerprint.replace(":", "").lower()


async def test_providers_add_with_certificate_prompt(hoist: Hoist, engine: Engine) -> None:
    hoist.env["ENGINE_PASSWORD"] = "secret"
    add = ["providers", "add", "--type", "ovirt", "--url", engine.api_url,
           "--user", "admin@internal", "--password-env", "ENGINE_PASSWORD"]  # fmt: skip

    # Refused: nothing is created, exit 1.
    refused_name = unique("refused")
    r = await hoist(*add[:2], refused_name, *add[2:], stdin="n\n")
    assert r.code == 1, r
    assert "Trust this certificate?" in r.stdout
    assert "no provider created" in r.stderr
    listed = (await hoist.ok("providers", "list", "-o", "json")).json()
    assert refused_name not in {p["name"] for p in listed["items"]}

    # Accepted: the fingerprint shown is the one pinned, and the provider is Ready.
    name = unique("engine")
    r = await hoist(*add[:2], name, *add[2:], stdin="y\n")
    assert r.code == 0, r
    assert _plain(engine.cert.fingerprint) in _plain(r.stdout)
    assert "Ready" in r.stdout
    got = (await hoist.ok("providers", "get", name, "-o", "json")).json()
    assert got["status"]["phase"] == "Ready"
    assert _plain(got["tls"]["fingerprint"]) == _plain(engine.cert.fingerprint)
    assert "secret" not in r.stdout + r.stderr

    # --yes: no question asked; the global -o json gives one JSON document.
    other = unique("engine")
    r = await hoist("-o", "json", *add[:2], other, *add[2:], "--yes", "--no-wait")
    assert r.code == 0, r
    assert r.json()["name"] == other
    await hoist.ok("providers", "delete", other)
    assert (await hoist("providers", "get", other)).code == 1


async def test_providers_add_bad_password_is_precise(hoist: Hoist, engine: Engine) -> None:
    r = await hoist(
        "providers", "add", unique("bad"), "--type", "ovirt", "--url", engine.api_url,
        "--user", "admin@internal", "--password-stdin", "--fingerprint", engine.cert.fingerprint,
        stdin="wrong-password\n",
    )  # fmt: skip
    assert r.code == 1, r
    assert "HTTP 422" in r.stderr
    assert "body.credentials" in r.stderr
    assert "AuthRefused" in r.stderr
    assert "wrong-password" not in r.stdout + r.stderr
    assert "Traceback" not in r.stderr


async def test_providers_add_bad_url_is_precise(hoist: Hoist) -> None:
    """Issue 24: an unclosed IPv6 bracket in the URL was shown as an HTTP 500, whether the
    certificate was looked at first or the definition sent at once."""
    for url, reason in (
        ("https://[::1/ovirt-engine/api", "unclosed IPv6 bracket"),
        ("https://127.0.0.1:0/ovirt-engine/api", "not in 1..65535"),
    ):
        for trust in ([], ["--insecure-skip-verify"]):
            r = await hoist(
                "providers", "add", unique("bad"), "--type", "ovirt", "--url", url,
                "--user", "admin@internal", "--password-stdin", *trust, stdin="pw\n",
            )  # fmt: skip
            assert r.code == 1, r
            assert "HTTP 422" in r.stderr, r
            assert reason in r.stderr, r
            assert "Traceback" not in r.stderr


async def test_usage_errors_exit_2(hoist: Hoist) -> None:
    r = await hoist("providers", "add", "x", "--type", "ovirt")
    assert r.code == 2
    assert "needs --url" in r.stderr
    r = await hoist("providers", "add", "x", "--type", "vmware", "--url", "https://h")
    assert r.code == 2
    r = await hoist(
        "providers", "add", "x", "--type", "ovirt", "--url", "https://h", "--project", "p"
    )
    assert r.code == 2
    assert "--project" in r.stderr


async def test_list_and_browse_show_concerns(hoist: Hoist, providers: dict[str, str]) -> None:
    src = providers["ovirt"]
    table = await hoist.ok("providers", "list")
    assert "Ready" in table.stdout
    r = await hoist.ok("providers", "browse", src)
    locked = next(line for line in r.stdout.splitlines() if "locked-1" in line)
    assert "ovirt.disk.locked" in locked
    assert "\x1b" not in r.stdout  # piped: no control codes

    r = await hoist.ok("providers", "browse", src, "--concern", "Critical", "-o", "json")
    assert [vm["name"] for vm in r.json()["items"]] == ["locked-1"]
    r = await hoist.ok("providers", "browse", src, "vms", "--search", "rerun", "--limit", "1")
    assert "1 of 2" in r.stdout

    r = await hoist.ok("providers", "concerns", src)
    assert "Critical ovirt.disk.locked" in r.stdout
    assert "    locked-1" in r.stdout
    r = await hoist("providers", "browse", src, "flavors")
    assert r.code == 1
    assert "has no collection 'flavors'" in r.stderr


async def test_maps_from_flags_and_file(
    hoist: Hoist, providers: dict[str, str], tmp_path: Path
) -> None:
    src, dst = providers["ovirt"], providers["cluster"]
    net = unique("net")
    r = await hoist.ok(
        "maps", "create", "network", net, "--source", src, "--target", dst,
        "--entry", "prod=pod", "--entry", f"dmz=multus:{NAMESPACE}/blue",
    )  # fmt: skip
    assert "no problems" in r.stdout
    assert f"multus:{NAMESPACE}/blue" in r.stdout
    got = (await hoist.ok("maps", "get", "network", net, "-o", "json")).json()
    assert got["entries"][1]["destination"] == {
        "type": "multus",
        "namespace": NAMESPACE,
        "name": "blue",
    }

    # A file holds the body; the flags override its name.
    store = unique("store")
    body = {
        "name": "overridden",
        "sourceProvider": src,
        "targetProvider": dst,
        "entries": [{"source": {"name": "data"}, "destination": {"storageClass": "standard"}}],
    }
    path = tmp_path / "storage.yaml"
    path.write_text(yaml.safe_dump(body))
    r = await hoist.ok("maps", "create", "storage", store, "-f", str(path), "-o", "json")
    assert r.json()["name"] == store
    assert r.json()["entries"][0]["destination"] == {"storageClass": "standard"}

    flags = await hoist.ok(
        "maps", "create", "storage", unique("store"), "--source", src, "--target", dst,
        "--entry", "data=standard:Block:ReadWriteOnce", "-o", "json",
    )  # fmt: skip
    assert flags.json()["entries"][0]["destination"] == {
        "storageClass": "standard",
        "volumeMode": "Block",
        "accessMode": "ReadWriteOnce",
    }

    listed = (await hoist.ok("maps", "list", "-o", "json")).json()
    assert net in {m["name"] for m in listed["network"]}
    assert store in {m["name"] for m in listed["storage"]}
    await hoist.ok("maps", "delete", "storage", store)
    assert (await hoist("maps", "get", "storage", store)).code == 1


async def test_bad_entry_spec_is_a_usage_error(hoist: Hoist, providers: dict[str, str]) -> None:
    base = ["maps", "create", "network", unique("net"), "--source", providers["ovirt"],
            "--target", providers["cluster"]]  # fmt: skip
    r = await hoist(*base, "--entry", "prod=bridge")
    assert r.code == 2, r
    assert "pod, ignored, multus:NAME or multus:NS/NAME" in r.stderr
    r = await hoist(*base, "--entry", "prod")
    assert r.code == 2
    assert "SRC=DEST" in r.stderr
    r = await hoist(
        "maps", "create", "storage", "s", "--source", "a", "--target", "b",
        "--entry", "data=standard:Fast",
    )  # fmt: skip
    assert r.code == 2
    assert "volume mode 'Fast'" in r.stderr


async def _maps(hoist: Hoist, providers: dict[str, str]) -> tuple[str, str]:
    src, dst = providers["ovirt"], providers["cluster"]
    net, store = unique("net"), unique("store")
    await hoist.ok("maps", "create", "network", net, "--source", src, "--target", dst,
                   "--entry", "prod=pod", "--entry", "dmz=multus:blue")  # fmt: skip
    await hoist.ok("maps", "create", "storage", store, "--source", src, "--target", dst,
                   "--entry", "data=standard")  # fmt: skip
    return net, store


async def test_plans_create_validate_get_delete(
    hoist: Hoist, providers: dict[str, str], tmp_path: Path
) -> None:
    net, store = await _maps(hoist, providers)
    common = ["--source", providers["ovirt"], "--target", providers["cluster"],
              "--namespace", NAMESPACE, "--network-map", net, "--storage-map", store]  # fmt: skip
    good = unique("plan")
    r = await hoist.ok("plans", "create", good, *common, "--vm", "web-1", "--vm", "db-1",
                       "--target-power-state", "off", "--max-disks-in-flight", "2",
                       "--max-vms-in-flight", "1", "--cutover", "2030-05-01T22:00:00Z")  # fmt: skip
    assert "Ready" in r.stdout
    assert "2030-05-01T22:00:00+00:00 (in " in _field(r.stdout, "cutover")
    assert _field(r.stdout, "limits").startswith("1 VMs, 2 disks in flight")
    plan = (await hoist.ok("plans", "get", good, "-o", "json")).json()
    assert plan["targetPowerState"] == "off"
    assert plan["limits"]["maxDisksInFlight"] == 2
    assert plan["limits"]["maxVmsInFlight"] == 1
    assert plan["cutover"] == "2030-05-01T22:00:00+00:00"
    assert [v["name"] for v in plan["vms"]] == ["web-1", "db-1"]
    assert (await hoist("plans", "validate", good)).code == 0

    # A VM with a locked disk: created (and shown) with its error; validate exits 1.
    bad = unique("plan")
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump({"name": "x", "vms": [{"name": "locked-1"}]}))
    r = await hoist("plans", "create", bad, "-f", str(path), *common)
    assert r.code == 0, r
    assert "CriticalConcern" in r.stdout
    r = await hoist("plans", "validate", bad)
    assert r.code == 1, r
    assert "CriticalConcern" in r.stdout
    assert (await hoist("plans", "validate", bad, "-o", "json")).json()["ready"] is False

    listed = (await hoist.ok("plans", "list", "-o", "json")).json()
    assert {good, bad} <= {p["name"] for p in listed["items"]}
    status = (await hoist.ok("plans", "status", good, "-o", "json")).json()
    assert (status["phase"], status["migration"]) == ("Ready", None)
    r = await hoist("plans", "start", bad)
    assert r.code == 1
    assert "HTTP 422" in r.stderr
    assert "CriticalConcern" in r.stderr
    await hoist.ok("plans", "delete", bad)

    missing = await hoist("plans", "get", "no-such-plan")
    assert missing.code == 1
    assert "HTTP 404" in missing.stderr
    assert "no plan 'no-such-plan'" in missing.stderr
    # Issue 24: a name is one path segment, never a path to another object. (The services
    # route on the decoded path, so no plan route matches it: a plain 404, not the map.)
    traversal = f"../networkmaps/{net}"
    for verb in ("get", "delete"):
        r = await hoist("plans", verb, traversal)
        assert r.code == 1, r
        assert "HTTP 404" in r.stderr, r
        assert f"/api/v1/plans/..%2Fnetworkmaps%2F{net} failed" in r.stderr, r
    assert (await hoist.ok("maps", "get", "network", net, "-o", "json")).json()["name"] == net
    r = await hoist("plans", "create", unique("plan"), *common)
    assert r.code == 2
    assert "--vm" in r.stderr
    r = await hoist("plans", "create", unique("plan"), *common, "--vm", "db-1",
                    "--cutover", "2030-05-01T22:00:00")  # fmt: skip
    assert r.code == 1, r
    assert "HTTP 422" in r.stderr
    assert "body.cutover" in r.stderr
    assert "timezone" in r.stderr
    r = await hoist("plans", "create", unique("plan"), *common, "--vm", "db-1",
                    "--max-vms-in-flight", "0")  # fmt: skip
    assert r.code == 2


def _field(text: str, key: str) -> str:
    """The value of a ``key: value`` line of ``fields`` output."""
    return next(x.split(":", 1)[1].strip() for x in text.splitlines() if x.startswith(f"{key}:"))


async def test_plans_cutover(hoist: Hoist, providers: dict[str, str], tmp_path: Path) -> None:
    net, store = await _maps(hoist, providers)
    name = unique("plan")
    path = tmp_path / "plan.yaml"
    body = {"vms": [{"name": "db-1", "targetName": unique("db"), "targetPowerState": "on"}]}
    path.write_text(yaml.safe_dump(body))
    await hoist.ok("plans", "create", name, "-f", str(path), "--source", providers["ovirt"],
                   "--target", providers["cluster"], "--namespace", NAMESPACE,
                   "--network-map", net, "--storage-map", store)  # fmt: skip
    shown = await hoist.ok("plans", "get", name)
    assert _field(shown.stdout, "cutover").startswith("at once")
    assert "(power on)" in shown.stdout

    r = await hoist.ok("plans", "cutover", name, "--at", "2030-05-01T22:00:00+02:00")
    assert f"plan {name}: cutover 2030-05-01T20:00:00+00:00 (in " in r.stdout
    doc = (await hoist.ok("plans", "cutover", name, "--at", "now", "-o", "json")).json()
    assert doc["cutover"] is not None
    assert doc["cutoverRevision"] == 2
    r = await hoist.ok("plans", "cutover", name, "--clear")
    assert f"plan {name}: cutover at once" in r.stdout
    assert (await hoist.ok("plans", "get", name, "-o", "json")).json()["cutover"] is None

    for args in ((), ("--at", "now", "--clear")):
        r = await hoist("plans", "cutover", name, *args)
        assert r.code == 2, r
        assert "--at TIME|now or --clear" in r.stderr
    r = await hoist("plans", "cutover", name, "--at", "tomorrow")
    assert r.code == 1, r
    assert "HTTP 422" in r.stderr
    assert "body.at" in r.stderr
    r = await hoist("plans", "cutover", "no-such-plan", "--at", "now")
    assert r.code == 1
    assert "HTTP 404" in r.stderr


async def test_plans_create_warm(hoist: Hoist, providers: dict[str, str]) -> None:
    net, store = await _maps(hoist, providers)
    common = ["--source", providers["ovirt"], "--target", providers["cluster"],
              "--namespace", NAMESPACE, "--network-map", net, "--storage-map", store,
              "--vm", "db-1"]  # fmt: skip
    name = unique("plan")
    r = await hoist("plans", "create", name, *common, "--warm", "--precopy-interval", "15")
    assert r.code == 0, r
    assert _field(r.stdout, "migration") == "warm, a precopy every 15 min until the cutover"
    # The simulated engine's disks have no incremental backup: the disk is named.
    assert "DiskIncrementalBackupDisabled" in r.stdout
    plan = (await hoist.ok("plans", "get", name, "-o", "json")).json()
    assert (plan["migrationType"], plan["precopyIntervalMinutes"]) == ("warm", 15)
    assert [p["path"] for p in plan["problems"]] == ["vms[0].disks[0]"]

    cold = unique("plan")
    r = await hoist.ok("plans", "create", cold, *common)
    assert _field(r.stdout, "migration") == "cold"
    plan = (await hoist.ok("plans", "get", cold, "-o", "json")).json()
    assert (plan["migrationType"], plan["precopyIntervalMinutes"]) == ("cold", 60)
    for bad in ("0", "1441", "hourly"):
        r = await hoist("plans", "create", unique("plan"), *common, "--precopy-interval", bad)
        assert r.code == 2, r
        assert "--precopy-interval" in r.stderr


async def test_hooks_and_plan_hooks(
    hoist: Hoist, providers: dict[str, str], tmp_path: Path
) -> None:
    book = tmp_path / "drain.yml"
    book.write_text("- hosts: localhost\n  tasks:\n    - debug: {msg: drain}\n")
    drain, smoke = unique("drain"), unique("smoke")
    r = await hoist("hooks", "create", drain, "--image", "quay.io/konveyor/hook-runner",
                    "--playbook", str(book), "--deadline", "5m", "--retries", "2",
                    "--service-account", "hooks")  # fmt: skip
    assert r.code == 0, r
    assert _field(r.stdout, "deadline") == "300 s"
    assert _field(r.stdout, "playbook") == "3 lines"
    await hoist.ok("hooks", "create", smoke, "--image", "quay.io/acme/smoke:1")
    bad = await hoist("hooks", "create", unique("x"), "--image", "a b")
    assert bad.code == 1, bad
    assert "image" in bad.stderr
    usage = await hoist("hooks", "create", unique("x"), "--image", "i", "--deadline", "soon")
    assert usage.code == 2, usage
    got = (await hoist.ok("hooks", "get", drain, "-o", "json")).json()
    assert (got["deadlineSeconds"], got["retries"], got["serviceAccount"]) == (300, 2, "hooks")
    assert (await hoist.ok("hooks", "get", drain, "--playbook")).stdout == book.read_text()
    net, store = await _maps(hoist, providers)
    name = unique("plan")
    r = await hoist("plans", "create", name, "--source", providers["ovirt"],
                    "--target", providers["cluster"], "--namespace", NAMESPACE,
                    "--network-map", net, "--storage-map", store, "--vm", "db-1",
                    "--pre-hook", drain, "--post-hook", smoke)  # fmt: skip
    assert r.code == 0, r
    assert _field(r.stdout, "hooks") == f"PreHook {drain}, PostHook {smoke}"
    listed = await hoist.ok("hooks", "list")
    assert drain in listed.stdout
    assert name in listed.stdout
    used = await hoist("hooks", "delete", drain)
    assert used.code == 1, used
    assert name in used.stderr
    await hoist.ok("plans", "delete", name)
    await hoist.ok("hooks", "delete", drain)
    missing = await hoist("hooks", "get", drain)
    assert missing.code == 1, missing


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_unreachable_url_and_config_file(inventory: ServiceProcess, tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{_free_port()}"
    r = await run_cli(["--url", dead, "providers", "list"], cli_env(tmp_path))
    assert r.code == 1, r
    assert f"cannot reach {dead}" in r.stderr
    assert "connection refused" in r.stderr
    assert "Traceback" not in r.stderr

    # The file gives url and token; an environment URL overrides the file's.
    config = tmp_path / "hoist.yaml"
    config.write_text(yaml.safe_dump({"url": dead, "token": "test-token-0123456789"}))
    env = cli_env(tmp_path, HOIST_CLI_CONFIG=str(config))
    assert (await run_cli(["providers", "list"], env)).code == 1
    env["HOIST_CLI_INVENTORY_URL"] = inventory.url
    r = await run_cli(["providers", "list", "-o", "json"], env)
    assert r.code == 0, r
    assert "items" in r.json()

    # No token: the API's 401, with a hint.
    r = await run_cli(["--url", inventory.url, "providers", "list"], cli_env(tmp_path))
    assert r.code == 1
    assert "HTTP 401" in r.stderr
    assert "--token" in r.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("urll: x\n")
    r = await run_cli(["--config", str(bad), "providers", "list"], cli_env(tmp_path))
    assert r.code == 2
    assert "unknown keys ['urll']" in r.stderr


async def test_lists_name_providers_and_a_wrong_url_says_which_service(
    hoist: Hoist, inventory: ServiceProcess, providers: dict[str, str], tmp_path: Path
) -> None:
    src, dst = providers["ovirt"], providers["cluster"]
    net = unique("net")
    await hoist.ok("maps", "create", "network", net, "--source", src, "--target", dst,
                   "--entry", "prod=pod")  # fmt: skip
    known = {
        p["id"]: p["name"]
        for p in (await hoist.ok("providers", "list", "-o", "json")).json()["items"]
    }
    listed = (await hoist.ok("maps", "list", "network")).stdout
    row = next(line for line in listed.splitlines() if net in line)
    assert known[src] in row, row
    assert known[dst] in row, row
    assert src[:8] not in listed, listed  # names, not (truncated) ids
    shown = (await hoist.ok("maps", "get", "network", net)).stdout
    assert f"source: {known[src]}" in " ".join(shown.split()), shown

    # The planner's URL pointing at the inventory: said so, not a bare 404.
    env = {**hoist.env, "HOIST_CLI_PLANNER_URL": inventory.url}
    wrong = await run_cli(["plans", "list"], env)
    assert wrong.code == 1, wrong
    assert "HTTP 404" in wrong.stderr
    assert f"{inventory.url} is the inventory service, not the planner" in wrong.stderr, wrong
    assert "HOIST_CLI_PLANNER_URL" in wrong.stderr

    # Messages name provider types as people write them.
    bad = await run_cli(["providers", "add", "x", "--type", "ovirt", "--yes"], hoist.env)
    assert bad.code == 2, bad
    assert "an oVirt provider needs --url" in bad.stderr, bad
