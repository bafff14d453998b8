"""The web console in a real browser: Debian's chromium (``tools/system-deps.sh``) driven by
Playwright, against the whole of Hoist (``tools.stack``, console included) on the session's
NATS and PostgreSQL.

The stack carries one small oVirt engine: two VMs that migrate and one whose disk the engine
refuses to hand out (``paused_system``), so a plan ends Failed with a populator's log to
read. Nothing is registered up front: the tests add the providers through the pages.

Screenshots of each page are written to ``docs/console/`` only when
``HOIST_UPDATE_SCREENSHOTS=1`` (a normal run must not touch the tree).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from shared.devservices import DevServices
from tests.conftest import TOKEN, create_database, drop_database
from tests.orchestrator.pipelines import ovirt_disk as _disk
from tools.stack import Stack, StackSpec

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "docs" / "console"
AXE = Path(__file__).parent / "vendor" / "axe.min.js"  # axe-core 4.14.1, vendor/README.md
NAMESPACE = "migrated"

OVIRT: dict[str, Any] = {
    "networks": [{"name": "prod", "vlan": 100}],
    "vms": [
        {
            "name": "web",
            "nics": [{"network": "prod", "model": "virtio"}],
            "disks": [
                _disk("web-root", "16MiB", format="cow", bootable=True),
                _disk("web-data", "16MiB"),
            ],
        },
        {"name": "db", "status": "down", "nics": [{"network": "prod"}], "disks": [_disk("db")]},
        {"name": "broken", "nics": [{"network": "prod"}], "disks": [_disk("broken-disk")]},
    ],
    "faults": [
        # Slow enough that a run's progress can be seen and photographed.
        {"kind": "bandwidth", "disk": "web-data", "bytes_per_second": "1MiB"},
        {"kind": "paused_system", "disk": "broken-disk"},
    ],
}


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("Debian's chromium is missing: run `make setup` (tools/system-deps.sh)")
    return found


@pytest.fixture(scope="package")
async def stack(
    servers: DevServices, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    database_url = await create_database(servers.database_url)
    spec = StackSpec(
        workdir=tmp_path_factory.mktemp("console-stack"),
        nats_url=servers.nats_url,
        database_url=database_url,
        token=TOKEN,
        ovirt=OVIRT,
        prefix=f"ui{uuid.uuid4().hex[:8]}",
        namespace=NAMESPACE,
        # The failing disk fails its VM at the first populator failure.
        env={"HOIST_ORCHESTRATOR_POPULATOR_MAX_RECREATIONS": "0"},
    )
    try:
        async with Stack(spec) as running:
            yield running
    finally:
        await drop_database(database_url)


@pytest.fixture(scope="package")
async def browser() -> AsyncIterator[Browser]:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    # bypass_csp: only so the test can inject axe-core; the console's own pages run under
    # their strict policy (checked by test_console_service).
    context = await browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    opened = await context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    opened.on("dialog", lambda dialog: dialog.accept())
    try:
        yield opened
    finally:
        await context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


async def axe_violations(page: Page) -> list[dict[str, Any]]:
    """WCAG 2.x level A violations on the page as it is now (axe-core)."""
    if not await page.evaluate("typeof window.axe !== 'undefined'"):
        await page.add_script_tag(path=str(AXE))
    found: list[dict[str, Any]] = await page.evaluate(
        """async () => {
            const only = {type: 'tag', values: ['wcag2a', 'wcag21a']};
            const r = await axe.run(document, {runOnly: only});
            return r.violations.map(v => ({id: v.id, help: v.help,
                nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5)}));
        }"""
    )
    return found


async def check_page(page: Page, shot: str) -> None:
    """No level-A violation; the screenshot for docs/console.md when asked for."""
    if os.environ.get("HOIST_UPDATE_SCREENSHOTS") == "1":  # first: a live page moves on
        SHOTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(SHOTS / f"{shot}.png"), full_page=True)
    violations = await axe_violations(page)
    assert not violations, f"{shot}: {violations}"
