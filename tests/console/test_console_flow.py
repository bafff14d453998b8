"""The console end to end, as an admin uses it: sign in, add the target cluster and the
oVirt engine (its certificate's SHA-256 fingerprint compared and pinned), look at the
inventory, make the network and storage maps, make a plan with the wizard, start it, watch
it end with one VM failed, and read that VM's error and its populator's last log lines.
Every page is checked with axe-core (no WCAG level A violation) on the way."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from tests.conftest import TOKEN
from tests.console.conftest import check_page
from tools.stack import Stack

if TYPE_CHECKING:
    from playwright.async_api import Page

SECOND = 1000  # Playwright counts milliseconds
#: A disk's row in the Disks table shows some bytes copied, not all.
PART_WAY = """(disk) => {
    const row = [...document.querySelectorAll('tr')].find((r) => r.textContent.includes(disk));
    const m = row && row.textContent.match(/([0-9.]+) (B|KiB|MiB) of ([0-9.]+) MiB/);
    if (!m) return false;
    const done = parseFloat(m[1]) * {B: 1, KiB: 1024, MiB: 1048576}[m[2]];
    return done > 0 && done < parseFloat(m[3]) * 1048576;
}"""


def _hex(fingerprint: str) -> str:
    return re.sub(r"[^0-9a-f]", "", fingerprint.lower())


async def sign_in(page: Page, stack: Stack) -> None:
    await page.goto(f"{stack.console.url}/ui/")
    await page.get_by_label("API token").fill(TOKEN)
    await page.keyboard.press("Enter")
    await page.get_by_role("navigation", name="Sections").wait_for()


async def new_map(
    page: Page, kind: str, name: str, source: str, destination: dict[str, str]
) -> None:
    """A map from the engine to the cluster with one entry, made in the map editor, whose
    choices (the source's networks or storage, the target's) come from the inventory."""
    from playwright.async_api import expect

    await page.get_by_role("link", name=f"New {kind} map").click()
    await page.get_by_label("Name", exact=True).fill(name)
    await page.get_by_label("Source provider").select_option(label="engine")
    await page.get_by_label("Target provider").select_option(label="host")
    await page.get_by_label("Source", exact=True).select_option(label=source)
    for label, value in destination.items():
        await page.get_by_label(label).select_option(value)
    await check_page(page, f"map-{kind}")
    await page.get_by_role("button", name="Save map").click()
    await expect(page.get_by_role("heading", name="Maps", exact=True)).to_be_visible()


async def test_from_providers_to_a_failed_vms_log(page: Page, stack: Stack) -> None:
    from playwright.async_api import expect

    assert stack.engine is not None
    await page.goto(f"{stack.console.url}/ui/")
    # A wrong token is refused with a sentence, and nothing is kept.
    await page.get_by_label("API token").fill("not-the-token")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_contain_text("refused")
    assert await page.evaluate("sessionStorage.length") == 0
    await check_page(page, "sign-in")
    await page.get_by_label("API token").fill(TOKEN)
    await page.get_by_role("button", name="Sign in").click()

    # --- providers -----------------------------------------------------------------------
    await page.get_by_role("link", name="Providers").click()
    await page.get_by_label("Type").select_option("kubevirt")
    await page.get_by_label("Name", exact=True).fill("host")
    await page.get_by_role("button", name="Add provider").click()
    await expect(page.get_by_text("Provider host added")).to_be_visible(timeout=30 * SECOND)

    creds = stack.ovirt_credentials()
    await page.get_by_label("Type").select_option("ovirt")
    await page.get_by_label("Name", exact=True).fill("engine")
    await page.get_by_label("URL").fill(creds["url"])
    await page.get_by_label("User (user@domain)").fill(creds["user"])
    await page.get_by_label("Password").fill(creds["password"])
    await page.get_by_role("button", name="Check certificate").click()
    shown = page.get_by_test_id("sha256")
    await expect(shown).to_be_visible(timeout=15 * SECOND)
    assert _hex(await shown.inner_text()) == _hex(creds["fingerprint"])
    await page.get_by_label(re.compile("I compared the SHA-256 fingerprint")).check()
    await check_page(page, "providers-add")
    await page.get_by_role("button", name="Add provider").click()
    await expect(page.get_by_text("Provider engine added")).to_be_visible(timeout=60 * SECOND)
    for name in ("host", "engine"):
        row = page.locator("tbody tr", has_text=name).first
        await expect(row).to_contain_text("Ready", timeout=90 * SECOND)
    await expect(page.locator("tbody tr", has_text="engine")).to_contain_text("3 vms")
    await check_page(page, "providers")

    # --- inventory -----------------------------------------------------------------------
    await page.get_by_role("link", name="Inventory").click()
    await page.get_by_label("Provider").select_option(label="engine (oVirt)")
    await expect(page.get_by_role("table")).to_contain_text("broken")
    await expect(page.get_by_text("1\u20133 of 3 vms").first).to_be_visible()
    await page.get_by_label("Search names").fill("we")
    await expect(page.get_by_text("1\u20131 of 1 vms").first).to_be_visible()
    await page.get_by_role("button", name="Details of web").click()
    await expect(page.get_by_role("heading", name="web")).to_be_visible()
    await check_page(page, "inventory")

    # --- maps ----------------------------------------------------------------------------
    await page.get_by_role("link", name="Maps").click()
    await new_map(page, "network", "engine-net", "prod", {"Destination type": "pod"})
    await new_map(page, "storage", "engine-storage", "data",
                  {"Storage class": "standard", "Volume mode": "Filesystem"})  # fmt: skip
    await expect(page.get_by_role("table", name="Storage maps")).to_contain_text("engine")
    await check_page(page, "maps")

    # --- the plan wizard -----------------------------------------------------------------
    await page.get_by_role("link", name="Plans").click()
    await page.get_by_role("link", name="New plan").click()
    await page.get_by_label("Plan name").fill("engine-plan")
    await page.get_by_label("Source provider").select_option(label="engine")
    await page.get_by_label("Target provider").select_option(label="host")
    await page.get_by_label("Target namespace").fill("migrated")
    await page.get_by_role("button", name="Next", exact=True).click()
    await page.get_by_label("Pick web").check()
    await page.get_by_label("Pick broken").check()
    await expect(page.get_by_text("2 VMs picked")).to_be_visible()
    await check_page(page, "plan-wizard")
    await page.get_by_role("button", name="Next", exact=True).click()
    await expect(page.get_by_label("Network map")).to_have_value(re.compile(".+"))
    await page.get_by_role("button", name="Next", exact=True).click()
    await page.get_by_label("VMs in flight").fill("2")
    await page.get_by_role("button", name="Next", exact=True).click()
    await expect(page.get_by_text("2 picked: web, broken")).to_be_visible()
    await page.get_by_role("button", name="Create plan").click()
    await expect(page.get_by_role("heading", name=re.compile("Plan engine-plan"))).to_be_visible()
    await expect(page.get_by_text("None: the plan can start.")).to_be_visible()

    # --- run it, watch it, read why a VM failed ------------------------------------------
    events = await page.context.new_page()
    await events.goto(f"{stack.console.url}/ui/#/events")
    # The token lives in its tab only (sessionStorage): a new tab signs in again.
    await events.get_by_label("API token").fill(TOKEN)
    await events.keyboard.press("Enter")
    await events.get_by_role("heading", name="Events").wait_for()
    await page.get_by_role("button", name="Start").click()
    await expect(page.get_by_role("heading", name=re.compile("Migration #1"))).to_be_visible()
    web_row = page.locator("tr[data-vm]", has_text="web")
    await expect(web_row).to_contain_text("Running", timeout=60 * SECOND)
    await page.get_by_role("button", name="Show VM web").click()
    disks = page.get_by_role("table", name="Disks")
    await expect(disks).to_contain_text("web-data")
    # Live from the progress stream: the throttled disk is seen part-way.
    await page.wait_for_function(PART_WAY, arg="web-data", timeout=60 * SECOND)
    await check_page(page, "plan-running")
    migration = page.get_by_role("heading", name=re.compile("Migration #1"))
    await expect(migration).to_contain_text("Failed", timeout=240 * SECOND)
    await expect(web_row).to_contain_text("Succeeded")
    broken_row = page.locator("tr[data-vm]", has_text="broken")
    await expect(broken_row).to_contain_text("Failed")
    await page.get_by_role("button", name="Show VM broken").click()
    await expect(page.get_by_role("heading", name="Why it failed")).to_be_visible()
    log = page.locator("pre.log").first
    await expect(log).not_to_be_empty()
    await expect(
        page.get_by_text(re.compile("Last \\d+ log lines of the populator"))
    ).to_be_visible()
    await check_page(page, "plan-failed-vm")

    await expect(events.locator("tbody")).to_contain_text(
        "VM broken of plan engine-plan", timeout=10 * SECOND
    )
    await check_page(events, "events")
    await events.close()

    # The list shows what happened; a re-run is offered and archiving hides the plan.
    await page.get_by_role("link", name="Plans").click()
    row = page.locator("tbody tr", has_text="engine-plan")
    await expect(row).to_contain_text("1 succeeded, 1 failed")
    await check_page(page, "plans")
    await row.get_by_role("link", name="engine-plan").click()
    await expect(page.get_by_role("button", name="Run again")).to_be_visible()
    await page.get_by_role("button", name="Archive").click()
    await expect(page.get_by_role("heading", name=re.compile("archived"))).to_be_visible()
    await expect(page.get_by_role("button", name="Run again")).to_have_count(0)
    await page.get_by_role("button", name="Unarchive").click()
    await expect(page.get_by_role("button", name="Run again")).to_be_visible()

    # The wizard's other way to choose VMs: a filter, resolved when the plan is written.
    await page.get_by_role("link", name="Plans").click()
    await page.get_by_role("link", name="New plan").click()
    await page.get_by_label("Plan name").fill("engine-filtered")
    await page.get_by_label("Target namespace").fill("migrated")
    await page.get_by_role("button", name="Next", exact=True).click()
    await page.get_by_label("By filter").check()
    await page.get_by_label("Name patterns").fill("d?")
    for _ in range(3):
        await page.get_by_role("button", name="Next", exact=True).click()
    await page.get_by_role("button", name="Create plan").click()
    await expect(
        page.get_by_role("heading", name=re.compile("Plan engine-filtered"))
    ).to_be_visible()
    facts = page.locator("dl.facts")
    await expect(facts.locator("dd").nth(4)).to_have_text("1")  # db, by its name pattern
