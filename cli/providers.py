"""``hoist providers``: add (with the certificate shown and confirmed before it is pinned),
list, get, delete, refresh, browse a provider's inventory, and its VMs' concerns."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

import click
from rich.text import Text

from cli.client import Api, seg
from cli.output import SEVERITY_STYLE, emit_json, fields, out, styled, table
from cli.runner import Failure, json_mode, output_option, run, show
from shared.payloads import ProviderType

TYPES = ("ovirt", "openstack", "kubevirt")
SEVERITY_ORDER = {"Critical": 0, "Warning": 1, "Information": 2}


@click.group()
def providers() -> None:
    """Source and target providers, and what they hold."""


def _password(env: str | None, stdin: bool) -> str | None:
    if env and stdin:
        raise click.UsageError("--password-env and --password-stdin exclude each other")
    if env:
        value = os.environ.get(env)
        if value is None:
            raise click.UsageError(f"--password-env {env}: the variable is not set")
        return value
    if stdin:
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            raise click.UsageError("--password-stdin: nothing on standard input")
        return line
    return None


def credentials(
    ptype: str,
    user: str | None,
    secret: str | None,
    project: str | None,
    domain: str | None,
    region: str | None,
    kubeconfig: str | None,
) -> dict[str, str]:
    """The flags as the inventory's ``credentials`` keys (Forklift's Secret keys)."""
    misplaced = [
        flag
        for flag, value, types in (
            ("--project", project, ("openstack",)),
            ("--domain", domain, ("openstack",)),
            ("--region", region, ("openstack",)),
            ("--kubeconfig", kubeconfig, ("kubevirt",)),
            ("--user", user, ("ovirt", "openstack")),
        )
        if value is not None and ptype not in types
    ]
    if misplaced:
        raise click.UsageError(f"{', '.join(misplaced)} do(es) not apply to a {ptype} provider")
    creds: dict[str, str] = {}
    if ptype == "ovirt":
        creds = {"user": user or "", "password": secret or ""}
        creds = {k: v for k, v in creds.items() if v}
    elif ptype == "openstack":
        pairs = {
            "username": user,
            "password": secret,
            "projectName": project,
            "domainName": domain,
            "regionName": region,
        }
        creds = {k: v for k, v in pairs.items() if v}
    else:
        if kubeconfig:
            try:
                creds["kubeconfig"] = Path(kubeconfig).expanduser().read_text()
            except OSError as exc:
                raise click.UsageError(f"--kubeconfig {kubeconfig}: {exc.strerror}") from None
        if secret:  # a remote cluster's bearer token, given as the password
            creds["token"] = secret
    return creds


def _show_certificate(answer: dict[str, Any]) -> None:
    cert = answer["certificate"]
    fields(
        [
            ("server", answer["url"]),
            ("subject", cert.get("subject")),
            ("issuer", cert.get("issuer")),
            ("valid", f"{cert.get('notBefore')} .. {cert.get('notAfter')}"),
            ("SHA-256", cert.get("sha256Fingerprint")),
        ]
    )
    if answer.get("reason"):
        out.print(Text(f"not trusted by the system CAs: {answer['reason']}", style="yellow"))


async def _trust(api: Api, url: str, yes: bool) -> dict[str, Any]:
    """The ``tls`` of a new provider whose trust the user did not give: the certificate the
    server presents, shown and confirmed, then pinned by its SHA-256."""
    answer = await api.get("inventory", "/api/v1/providers/certificate", url=url)
    if answer.get("trustedBySystem"):
        if not json_mode():
            out.print(Text("the server's certificate is trusted by the system CAs", style="green"))
        return {}
    # The certificate goes to stderr in json mode, so stdout stays one JSON document.
    if json_mode():
        from cli.output import err

        err.print(
            Text(f"certificate of {url}: SHA-256 {answer['certificate']['sha256Fingerprint']}")
        )
    else:
        _show_certificate(answer)
    if not yes:
        try:
            ok = click.confirm("Trust this certificate?", default=False, err=json_mode())
        except click.Abort:
            ok = False
        if not ok:
            raise Failure("certificate not trusted: no provider created")
    return {"fingerprint": answer["certificate"]["sha256Fingerprint"]}


async def _wait_ready(api: Api, pid: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        row: dict[str, Any] = await api.get("inventory", f"/api/v1/providers/{seg(pid)}")
        phase = row["status"]["phase"]
        if phase == "Ready":
            return row
        if phase == "ConnectionFailed":
            cond = _condition(row, "Connected")
            raise Failure(
                f"provider {row['name']} failed to connect: {cond.get('reason')}: "
                f"{cond.get('message')}"
            )
        if time.monotonic() > deadline:
            raise Failure(f"provider {row['name']} is still {phase} after {timeout:.0f}s")
        await asyncio.sleep(0.5)


def _condition(row: dict[str, Any], ctype: str) -> dict[str, Any]:
    for c in row["status"].get("conditions") or []:
        if c.get("type") == ctype:
            return dict(c)
    return {}


@providers.command("add")
@click.argument("name")
@click.option("--type", "ptype", type=click.Choice(TYPES), required=True)
@click.option("--url", help="oVirt API URL, Keystone v3 URL, or a remote cluster's API server.")
@click.option("--user", help="oVirt user (admin@internal) or OpenStack username.")
@click.option(
    "--password-env", metavar="VAR", help="Read the password (kubevirt: token) from $VAR."
)
@click.option("--password-stdin", is_flag=True, help="Read the password (or token) from stdin.")
@click.option("--project", help="OpenStack project name.")
@click.option("--domain", help="OpenStack domain name.")
@click.option("--region", help="OpenStack region name.")
@click.option("--kubeconfig", type=click.Path(dir_okay=False), help="Remote cluster kubeconfig.")
@click.option("--ca-file", type=click.Path(dir_okay=False), help="CA (PEM) the source uses.")
@click.option(
    "--fingerprint", metavar="HEX", help="Pin this SHA-256 (or SHA-1) certificate fingerprint."
)
@click.option("--insecure-skip-verify", is_flag=True, help="Do not verify the source's TLS.")
@click.option("--yes", "-y", is_flag=True, help="Trust the presented certificate without asking.")
@click.option("--no-test", is_flag=True, help="Create without testing the connection first.")
@click.option("--wait/--no-wait", default=True, help="Wait until the provider is Ready.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=300.0,
    show_default=True,
    help="Seconds --wait waits.",
)
@output_option
def add(
    name: str,
    ptype: str,
    url: str | None,
    user: str | None,
    password_env: str | None,
    password_stdin: bool,
    project: str | None,
    domain: str | None,
    region: str | None,
    kubeconfig: str | None,
    ca_file: str | None,
    fingerprint: str | None,
    insecure_skip_verify: bool,
    yes: bool,
    no_test: bool,
    wait: bool,
    timeout: float,
) -> None:
    """Add a provider. An https URL without --ca-file, --fingerprint or
    --insecure-skip-verify: its certificate is shown, confirmed, and pinned."""
    if sum(bool(x) for x in (ca_file, fingerprint, insecure_skip_verify)) > 1:
        raise click.UsageError("choose one of --ca-file, --fingerprint, --insecure-skip-verify")
    if ptype != "kubevirt" and not url:
        raise click.UsageError(f"{ProviderType(ptype).phrase()} needs --url")
    secret = _password(password_env, password_stdin)
    creds = credentials(ptype, user, secret, project, domain, region, kubeconfig)
    tls: dict[str, Any] = {}
    if ca_file:
        try:
            tls["caCert"] = Path(ca_file).expanduser().read_text()
        except OSError as exc:
            raise click.UsageError(f"--ca-file {ca_file}: {exc.strerror}") from None
    elif fingerprint:
        tls["fingerprint"] = fingerprint
    elif insecure_skip_verify:
        tls["insecureSkipVerify"] = True

    async def work(api: Api) -> None:
        body: dict[str, Any] = {"name": name, "type": ptype, "url": url or "", "credentials": creds}
        trust = dict(tls)
        if not trust and url and url.startswith("https://"):
            trust = await _trust(api, url, yes)
        body["tls"] = trust
        params = {"testConnection": "false"} if no_test else {}
        row = await api.post("inventory", "/api/v1/providers", body, **params)
        if wait:
            row = await _wait_ready(api, row["id"], timeout)
        if json_mode():
            emit_json(row)
        else:
            out.print(f"provider {row['name']} ({row['type']}) created: {row['id']}")
            out.print(Text.assemble("phase: ", styled(row["status"]["phase"])))

    run(work)


@providers.command("list")
@output_option
def list_() -> None:
    """Every provider, its phase and what it holds."""

    async def work(api: Api) -> None:
        body = await api.get("inventory", "/api/v1/providers")
        if json_mode():
            emit_json(body)
            return
        table(
            ("name", "type", "phase", "url", "objects", "last refresh"),
            (
                (
                    p["name"],
                    p["type"],
                    styled(p["status"]["phase"]),
                    p["url"] or "(in-cluster)",
                    sum((p["status"].get("counts") or {}).values()),
                    p["status"].get("lastRefresh") or "-",
                )
                for p in body["items"]
            ),
        )

    run(work)


@providers.command("get")
@click.argument("ref")
@output_option
def get(ref: str) -> None:
    """One provider: status, conditions, certificate, counts."""

    async def work(api: Api) -> None:
        p = await api.get("inventory", f"/api/v1/providers/{seg(ref)}")
        if json_mode():
            emit_json(p)
            return
        st = p["status"]
        cert = st.get("certificate") or {}
        counts = st.get("counts") or {}
        fields(
            [
                ("name", p["name"]),
                ("id", p["id"]),
                ("type", p["type"]),
                ("url", p["url"] or "(in-cluster)"),
                ("phase", styled(st["phase"])),
                ("last refresh", st.get("lastRefresh") or "-"),
                ("certificate", cert.get("sha256Fingerprint") or "-"),
                ("counts", ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "-"),
            ]
        )
        for c in st.get("conditions") or []:
            out.print(
                f"  {c.get('type')}={c.get('status')} {c.get('reason', '')} {c.get('message', '')}"
            )

    run(work)


@providers.command("delete")
@click.argument("ref")
@output_option
def delete(ref: str) -> None:
    """Delete a provider and its credentials Secret."""

    async def work(api: Api) -> None:
        await api.delete("inventory", f"/api/v1/providers/{seg(ref)}")
        show({"deleted": ref}, lambda: out.print(f"provider {ref} deleted"))

    run(work)


@providers.command("refresh")
@click.argument("ref")
@output_option
def refresh(ref: str) -> None:
    """Reconnect and reload a provider's whole inventory now."""

    async def work(api: Api) -> None:
        body = await api.post("inventory", f"/api/v1/providers/{seg(ref)}/refresh")
        show(body, lambda: out.print(f"refresh of provider {ref} requested"))

    run(work)


async def _collect(
    api: Api, ref: str, collection: str, limit: int, **query: Any
) -> tuple[list[dict[str, Any]], int]:
    """Up to ``limit`` objects, following the cursors; and the collection's total."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    total = 0
    while len(items) < limit:
        page = await api.get(
            "inventory",
            f"/api/v1/providers/{seg(ref)}/{seg(collection)}",
            limit=min(1000, limit - len(items)),
            cursor=cursor,
            detail=1,
            **query,
        )
        items.extend(page["items"])
        total = page["total"]
        cursor = page.get("next")
        if not cursor:
            break
    return items, total


def _concern_text(concerns: list[dict[str, Any]]) -> Text:
    text = Text()
    for c in sorted(concerns, key=lambda c: SEVERITY_ORDER.get(c.get("category", ""), 9)):
        if text:
            text.append(", ")
        text.append(c.get("id", "?"), style=SEVERITY_STYLE.get(c.get("category", ""), ""))
    return text


def _print_concerns(items: list[dict[str, Any]]) -> None:
    """VMs with concerns grouped by concern, worst first."""
    groups: dict[tuple[str, str], list[str]] = {}
    labels: dict[str, str] = {}
    for vm in items:
        for c in vm.get("concerns") or []:
            groups.setdefault((c.get("category", ""), c.get("id", "")), []).append(vm["name"])
            labels[c.get("id", "")] = c.get("label", "")
    if not groups:
        out.print(Text("no VM has a concern", style="green"))
        return
    for (category, cid), names in sorted(
        groups.items(), key=lambda g: (SEVERITY_ORDER.get(g[0][0], 9), g[0][1])
    ):
        out.print(
            Text.assemble(
                (f"{category} ", SEVERITY_STYLE.get(category, "")),
                (cid, "bold"),
                f"  {labels[cid]}",
            )
        )
        for n in sorted(names):
            out.print(f"    {n}")


@providers.command("browse")
@click.argument("ref")
@click.argument("collection", default="vms")
@click.option("--search", help="Substring of the name.")
@click.option(
    "--concern",
    type=click.Choice(("Critical", "Warning", "Information")),
    help="Only VMs with a concern of this category.",
)
@click.option("--limit", type=click.IntRange(min=1), default=500, show_default=True)
@click.option("--concerns-only", is_flag=True, help="Only VMs with concerns, grouped by concern.")
@output_option
def browse(
    ref: str,
    collection: str,
    search: str | None,
    concern: str | None,
    limit: int,
    concerns_only: bool,
) -> None:
    """A provider's inventory: COLLECTION (default vms) as a table."""
    if concerns_only and collection != "vms":
        raise click.UsageError("--concerns-only applies to the vms collection")
    _browse(ref, collection, search, concern, limit, concerns_only)


@providers.command("concerns")
@click.argument("ref")
@click.option("--limit", type=click.IntRange(min=1), default=10_000, show_default=True)
@output_option
def concerns(ref: str, limit: int) -> None:
    """The provider's VMs that have concerns, grouped by concern."""
    _browse(ref, "vms", None, None, limit, True)


def _browse(
    ref: str, collection: str, search: str | None, concern: str | None, limit: int, grouped: bool
) -> None:
    async def work(api: Api) -> None:
        query: dict[str, Any] = {"search": search, "concern": concern}
        if grouped and concern is None:
            query["sort"] = "-concerns"
        items, total = await _collect(api, ref, collection, limit, **query)
        if grouped:
            items = [i for i in items if i.get("concerns")]
        if json_mode():
            emit_json({"items": items, "total": total})
            return
        if grouped:
            _print_concerns(items)
            return
        table(
            ("name", "id", "status", "concerns"),
            (
                (i["name"], i["id"], i.get("status") or "", _concern_text(i.get("concerns") or []))
                for i in items
            ),
            title=f"{collection} ({len(items)} of {total})",
        )

    run(work)
