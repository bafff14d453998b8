"""The Containerfile, checked statically (quick, and where buildah is missing): one
non-root image whose entrypoint is the populator dispatcher, with every console script the
chart runs, qemu-img, and no build tools in the final stage. ``tests/image/`` builds the
image and checks the same inside it."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from dataclasses import dataclass, field

import yaml

from shared.settings import OrchestratorSettings
from tests.chart import rendering as r
from tools import chartgen

CONTAINERFILE = r.ROOT / "Containerfile"


@dataclass
class Stage:
    base: str
    name: str = ""
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [arg for kw, arg in self.instructions if kw == keyword]


def stages() -> list[Stage]:
    """FROM-separated stages of (instruction, argument), continuation lines joined."""
    text = re.sub(r"\\\n", " ", CONTAINERFILE.read_text())
    args: dict[str, str] = {}
    found: list[Stage] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), " ".join(rest.split())
        if keyword == "ARG" and not found:
            name, _, default = rest.partition("=")
            args[name] = default
        elif keyword == "FROM":
            words = rest.split()
            base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], words[0])
            found.append(Stage(base, words[2] if len(words) > 2 else ""))
        else:
            found[-1].instructions.append((keyword, rest))
    return found


def _installed_packages(stage: Stage) -> set[str]:
    packages: set[str] = set()
    for run in stage.all("RUN"):
        for command in run.split("&&"):
            words = shlex.split(command)
            if "apt-get" in words and "install" in words:
                packages |= {
                    w for w in words[words.index("install") + 1 :] if not w.startswith("-")
                }
    return packages


def test_two_stages_from_python_slim() -> None:
    build, final = stages()
    assert build.name == "build"
    assert build.base == final.base
    assert re.fullmatch(r"docker\.io/library/python:3\.11-slim(-\w+)?", final.base)
    assert any("pip install --no-deps ." in run for run in build.all("RUN"))
    # The dependencies come from the lock file, in a layer of their own.
    assert any("--requirement constraints-image.txt" in run for run in build.all("RUN"))
    # The final stage takes the built environment, not the sources or the compilers.
    assert final.all("COPY") == ["--from=build /opt/hoist /opt/hoist"]


def test_final_stage_has_qemu_and_no_build_tools() -> None:
    build, final = stages()
    runtime = _installed_packages(final)
    assert "qemu-utils" in runtime  # qemu-img: the OpenStack populator's qcow2 conversion
    assert {"gcc", "libc6-dev", "libxml2-dev"} <= _installed_packages(build)
    assert not {p for p in runtime if p.endswith("-dev") or p in ("gcc", "make", "build-essential")}
    assert all("rm -rf /var/lib/apt/lists/*" in run for run in final.all("RUN") if "apt-get" in run)


def test_runs_as_the_non_root_user_of_the_chart_and_the_populator_pods() -> None:
    (user,) = stages()[-1].all("USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit()
    assert gid.isdigit()
    assert int(uid) > 0
    assert int(gid) > 0
    values = yaml.safe_load((r.CHART / "values.yaml").read_text())
    assert values["securityContext"]["runAsUser"] == int(uid)
    assert values["securityContext"]["runAsGroup"] == int(gid)
    assert OrchestratorSettings.model_fields["populator_uid"].default == int(uid)


def test_entrypoint_is_the_populator_dispatcher_and_scripts_are_on_path() -> None:
    final = stages()[-1]
    (entrypoint,) = final.all("ENTRYPOINT")
    argv = json.loads(entrypoint)
    assert argv[0] == "/opt/hoist/bin/python"
    assert argv[1:] == ["-m", "services.populators"]
    (env,) = final.all("ENV")
    assert "PATH=/opt/hoist/bin:$PATH" in env.split()
    assert "PYTHONDONTWRITEBYTECODE=1" in env.split()  # the root filesystem is read-only
    assert not final.all("CMD")  # populator pods pass only their arguments


def test_the_image_holds_every_console_script_the_chart_runs() -> None:
    scripts = tomllib.loads((r.ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    commands = {c["command"] for c in chartgen.components().values()}
    assert commands <= set(scripts)
    copied = {arg.split()[-1].strip("./") for arg in stages()[0].all("COPY")}
    for command in commands:
        package = scripts[command].split(".")[0]
        assert package in copied, f"{command} needs {package}/ in the build stage"
    # The populator dispatcher too, and both populators it dispatches to.
    assert scripts["hoist-populator"] == "services.populators.__main__:main"
    # The build context lets those sources in.
    lines = (r.ROOT / ".dockerignore").read_text().splitlines()
    ignore = [line for line in lines if line and not line.startswith("#")]
    assert ignore[0] == "*"  # everything else stays out (.venv, caches, tests)
    for needed in ("pyproject.toml", "README.md", "constraints-image.txt", "shared/", "services/"):
        assert f"!{needed}" in ignore


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_image_installs_with_constraints_that_match_pyproject() -> None:
    """``constraints-image.txt`` pins what the image takes; a dependency changed in
    pyproject.toml without ``python -m tools.containerimage lock`` fails here."""
    build = stages()[0]
    assert any("PIP_CONSTRAINT=/src/constraints-image.txt" in env for env in build.all("ENV"))
    assert "constraints-image.txt ./" in build.all("COPY")
    pins = {}
    for line in (r.ROOT / "constraints-image.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[_normal(name)] = version
    assert {"pip", "setuptools", "wheel"} <= set(pins)  # the build's own tools too
    project = tomllib.loads((r.ROOT / "pyproject.toml").read_text())["project"]
    for dependency in project["dependencies"]:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[^\]]+\])?==(\S+)", dependency)
        assert match, dependency
        assert pins.get(_normal(match.group(1))) == match.group(3), dependency
