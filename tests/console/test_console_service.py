"""The console service itself: its pages ship in the package with a strict policy, and it
forwards every API path to the service that owns it, unchanged both ways (the token, the
body, errors, event streams), saying so when a path is no API's or a service is down."""

from __future__ import annotations

import tomllib
from fnmatch import fnmatch
from pathlib import Path

import httpx

from services.console.app import STATIC, create_app
from shared.apiroutes import ROUTES, service_of
from shared.settings import ConsoleSettings, HoistSettings
from tests.conftest import TOKEN
from tools.stack import Stack

ROOT = Path(__file__).resolve().parents[2]


def test_every_page_file_ships_in_the_package() -> None:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = data["package-data"]["services.console"]
    base = STATIC.parent
    files = [p.relative_to(base).as_posix() for p in STATIC.rglob("*") if p.is_file()]
    assert files
    missing = [
        f
        for f in files
        if not any(fnmatch(f, pat) and f.count("/") == pat.count("/") for pat in patterns)
    ]
    assert not missing, f"not in package-data {patterns}: {missing}"


def test_paths_belong_to_whole_prefixes() -> None:
    assert service_of("/api/v1/plans/x/vms") == "planner"
    assert service_of("/api/v1/providers") == "inventory"
    assert service_of("/api/v1/plansx") is None  # a prefix is whole segments
    assert service_of("/api/v1/progress/events") == "progress"
    assert {s for s in ROUTES} == {"inventory", "planner", "orchestrator", "progress"}


async def test_pages_policy_and_a_service_that_is_down() -> None:
    down = "http://127.0.0.1:9"  # discard port: nothing answers
    settings = HoistSettings(
        console=ConsoleSettings(
            inventory_url=down, planner_url=down, orchestrator_url=down, progress_url=down
        )
    )
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://console") as client,
    ):
        page = await client.get("/ui/")
        assert page.status_code == 200
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert page.headers["x-frame-options"] == "DENY"
        assert (await client.get("/ui")).headers["location"] == "/ui/"
        assert (
            (await client.get("/ui/js/app.js"))
            .headers["content-type"]
            .startswith("text/javascript")
        )
        gone = await client.get("/api/v1/plans")
        assert gone.status_code == 502
        assert "the planner service at http://127.0.0.1:9 did not answer" in gone.json()["detail"]
        unknown = await client.get("/api/v1/nothing")
        assert unknown.status_code == 404
        assert "no Hoist API serves /api/v1/nothing" in unknown.json()["detail"]


async def test_forwards_tokens_bodies_errors_and_streams(stack: Stack) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=stack.console.url, timeout=10) as http:
        refused = await http.get("/api/v1/providers")
        assert refused.status_code == 401  # the service's own answer, challenge included
        assert refused.headers["www-authenticate"].startswith("Bearer")
        bad = await http.post("/api/v1/plans", json={"name": "x"}, headers=auth)
        assert bad.status_code == 422
        assert any(p["loc"][:2] == ["body", "targetNamespace"] for p in bad.json()["detail"])
        listed = await http.get("/api/v1/plans", params={"limit": 1}, headers=auth)
        assert listed.status_code == 200
        assert "items" in listed.json()
        async with http.stream(
            "GET", "/api/v1/planner/events", params={"since": 0}, headers=auth
        ) as events:
            assert events.status_code == 200
            assert events.headers["content-type"].startswith("text/event-stream")
            first = await anext(events.aiter_text())
            assert first.startswith("retry:")


async def test_what_demo_keep_prints_works(stack: Stack, tmp_path: Path) -> None:
    """``make demo DEMO_ARGS=--keep`` prints the console's URL and exports that the CLI
    works with as they are (the token included: without it every call is a 401)."""
    from tests.cli.conftest import cli_env, run_cli
    from tools.demo import keep_lines

    lines = keep_lines(stack)
    assert any(f"{stack.console.url}/ui/" in line for line in lines), lines
    exports = dict(line.split("export ", 1)[1].split("=", 1) for line in lines if "export " in line)
    assert exports["HOIST_CLI_TOKEN"] == TOKEN
    listed = await run_cli(["providers", "list", "-o", "json"], cli_env(tmp_path, **exports))
    assert listed.code == 0, listed
    assert "items" in listed.json()
    plans = await run_cli(["plans", "list"], cli_env(tmp_path, **exports))
    assert plans.code == 0, plans
