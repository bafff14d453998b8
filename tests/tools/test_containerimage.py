"""The image's cache key: what the image is built from changes it, nothing else does."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tools import containerimage as ci


@pytest.fixture
def checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of what the key reads (and a test and a simulator, which it must not)."""
    for name in (*ci.CONTEXT_FILES, "constraints-image.txt"):
        shutil.copy(ci.ROOT / name, tmp_path / name)
    for tree in ci.CONTEXT_TREES:
        (tmp_path / tree).mkdir()
        (tmp_path / tree / "module.py").write_text("VALUE = 1\n")
    for outside in ("tests", "sim"):
        (tmp_path / outside).mkdir()
        (tmp_path / outside / "module.py").write_text("VALUE = 1\n")
    monkeypatch.setattr(ci, "ROOT", tmp_path)
    monkeypatch.setattr(ci, "CONTAINERFILE", tmp_path / "Containerfile")
    monkeypatch.setattr(ci, "CONSTRAINTS", tmp_path / "constraints-image.txt")
    return tmp_path


def test_the_key_follows_the_build_context_and_the_base(checkout: Path) -> None:
    key = ci.context_key("base:1")
    assert key == ci.context_key("base:1")
    assert ci.context_key("base:2") != key
    (checkout / "tests" / "module.py").write_text("VALUE = 2\n")
    (checkout / "sim" / "module.py").write_text("VALUE = 2\n")
    (checkout / "services" / "__pycache__").mkdir()
    (checkout / "services" / "__pycache__" / "module.cpython-311.pyc").write_bytes(b"x")
    assert ci.context_key("base:1") == key
    for changed in (
        "services/module.py",
        "cli/module.py",
        "constraints-image.txt",
        "Containerfile",
    ):
        before = ci.context_key("base:1")
        with (checkout / changed).open("a") as f:
            f.write("# changed\n")
        assert ci.context_key("base:1") != before, changed


def test_the_local_base_is_named_by_its_recipe(monkeypatch: pytest.MonkeyPatch) -> None:
    ref = ci.base_ref()
    assert ref.startswith(f"{ci.BASE_REPOSITORY}:python3.11-bookworm-")
    monkeypatch.setattr(ci, "BASE_PACKAGES", (*ci.BASE_PACKAGES, "curl"))
    assert ci.base_ref() != ref
