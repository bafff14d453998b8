"""The console with the keyboard alone: sign in, move between sections, add a provider and
open a plan's failed VM without a mouse; each step lands focus where a screen-reader user
expects it (the new page's heading, the VM's heading)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx

from tests.conftest import TOKEN
from tests.console.conftest import check_page
from tools.stack import Stack

if TYPE_CHECKING:
    from playwright.async_api import Page

SECOND = 1000
FOCUSED = """() => {
    const e = document.activeElement;
    if (!e || e === document.body) return '';
    const label = e.labels && e.labels.length ? e.labels[0].textContent : '';
    return (e.getAttribute('aria-label') || label || e.textContent || '').trim();
}"""


async def tab_to(page: Page, name: str, *, back: bool = False, limit: int = 120) -> None:
    """Press Tab (Shift+Tab) until the focused control is called ``name``."""
    seen = []
    for _ in range(limit):
        await page.keyboard.press("Shift+Tab" if back else "Tab")
        focused = await page.evaluate(FOCUSED)
        if focused == name:
            return
        seen.append(focused)
    raise AssertionError(f"{name!r} is not reachable with the keyboard; focus went {seen[:40]}")


async def focused_text(page: Page) -> str:
    text: str = await page.evaluate("() => document.activeElement.textContent.trim()")
    return text


async def test_keyboard_only(page: Page, stack: Stack) -> None:
    from playwright.async_api import expect

    await page.goto(f"{stack.console.url}/ui/")
    assert await page.evaluate(FOCUSED) == "API token"  # focus starts in the one field
    await page.keyboard.type(TOKEN)
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name="Plans", exact=True)).to_be_focused()

    await tab_to(page, "Providers", back=True)
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name="Providers", exact=True)).to_be_focused()
    await tab_to(page, "Type")
    for _ in range(2):  # oVirt -> OpenStack -> KubeVirt
        await page.keyboard.press("ArrowDown")
    await expect(page.get_by_label("Type")).to_have_value("kubevirt")
    await tab_to(page, "Name")
    await page.keyboard.type("keyboard-host")
    await tab_to(page, "Add provider")
    await page.keyboard.press("Enter")
    await expect(page.get_by_text("Provider keyboard-host added")).to_be_visible(
        timeout=30 * SECOND
    )
    await expect(page.locator("tbody tr", has_text="keyboard-host")).to_contain_text("Ready")

    # A plan of the flow test, if it ran (the module's order): its failed VM, by keyboard.
    async with httpx.AsyncClient(base_url=stack.console.url, timeout=10) as http:
        known = await http.get(
            "/api/v1/plans/engine-plan", headers={"Authorization": f"Bearer {TOKEN}"}
        )
    await tab_to(page, "Plans", back=True)
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name="Plans", exact=True)).to_be_focused()
    if known.status_code != 200:
        return
    await tab_to(page, "engine-plan")
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name="Plan engine-plan")).to_be_focused()
    await tab_to(page, "Show VM broken")
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name="VM broken")).to_be_focused()
    await tab_to(page, "Log of DiskTransfer, disk broken-disk")  # the log scrolls by keyboard
    await check_page(page, "keyboard-plan")
