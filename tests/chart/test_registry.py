"""``global.imageRegistry``: every image the release runs, or hands to the pods it creates,
comes from the mirror; and docs/helm.md lists exactly the images to mirror."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from tests.chart import rendering as r

MIRROR = "mirror.example.com:5000/airgap"


def images(manifest: str) -> set[str]:
    """Every image a pod of the release runs and every image it passes to pods it creates
    (``HOIST_*_IMAGE`` settings)."""
    found: set[str] = set()
    for doc in yaml.safe_load_all(manifest):
        spec = ((doc or {}).get("spec") or {}).get("template", {}).get("spec") or {}
        for container in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
            found.add(container["image"])
            for var in container.get("env") or []:
                if var["name"].endswith("_IMAGE") and "value" in var:
                    found.add(var["value"])
    return found


def render(values: dict[str, Any] | None) -> str:
    done = r.template(values)
    assert done.returncode == 0, done.stderr
    return done.stdout


def with_mirror(values: dict[str, Any] | None) -> dict[str, Any]:
    return {**(values or {}), "global": {"imageRegistry": MIRROR}}


@pytest.mark.parametrize("name", list(r.RENDERINGS))
def test_global_image_registry_rewrites_every_image(name: str) -> None:
    plain = images(render(r.RENDERINGS[name]))
    mirrored = images(render(with_mirror(r.RENDERINGS[name])))
    assert len(mirrored) == len(plain)
    assert all(image.startswith(MIRROR + "/") for image in mirrored), mirrored
    # The path and tag (or digest) stay; only the registry changes.
    expected = set()
    for image in plain:
        head, _, rest = image.partition("/")
        expected.add(f"{MIRROR}/{rest}" if "." in head or ":" in head else f"{MIRROR}/{image}")
    assert mirrored == expected


def test_an_image_without_a_registry_is_docker_hubs() -> None:
    values = with_mirror({"nats": {"bundled": {"image": {"repository": "nats", "tag": "2.10"}}}})
    assert f"{MIRROR}/library/nats:2.10" in images(render(values))


def test_the_registry_must_be_a_registry() -> None:
    for bad in ("https://mirror.example.com", "mirror.example.com:port", "two words"):
        done = r.template(with_mirror(None) | {"global": {"imageRegistry": bad}})
        assert done.returncode != 0, bad
        assert "imageRegistry" in done.stderr


def test_docs_list_exactly_the_images_to_mirror() -> None:
    text = (r.ROOT / "docs" / "helm.md").read_text()
    section = text.split("### Air-gapped installs", 1)[1].split("\n#", 1)[0]
    listed = set(re.findall(r"^\| `([^`]+)` \|", section, re.MULTILINE))
    values = yaml.safe_load((r.CHART / "values.yaml").read_text())
    chart = yaml.safe_load((r.CHART / "Chart.yaml").read_text())
    # Everything the defaults run, and the converter image they hand to conversion pods.
    rendered = images(render(None))
    assert values["config"]["orchestrator"]["converterImage"] in rendered
    assert listed == rendered
    assert f"{values['image']['repository']}:{chart['appVersion']}" in listed
