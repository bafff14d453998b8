"""The Hoist image, built on this machine from the repository's Containerfile.

``python -m tools.containerimage build`` (``make image``) builds it with ``buildah bud
--isolation chroot`` (no daemon, no OCI runtime, no user namespaces: it runs where podman
cannot) and prints its reference and size. The base is ``PYTHON_IMAGE`` (the official
``python:3.11-slim-bookworm``) when it is in local storage or a registry answers for it;
otherwise a base made here from Debian's packages (``base``): ``debootstrap --variant=minbase
bookworm`` with Debian's Python 3.11 and venv, ``apt-get``, ``useradd`` and CA certificates,
i.e. what the Containerfile expects of its base, imported with buildah from scratch.

Reproducible: the Python dependencies come from ``constraints-image.txt`` (every
distribution the image holds, pinned, pip and the build backend included; ``lock``
regenerates it from pyproject.toml), Debian's from bookworm. The image needs no network
when it runs.

Cached by content, like the guests (``tools/guestimage.py``): the key covers the
Containerfile, .dockerignore, pyproject.toml, README.md, the constraints, the sources the
image is built from and the base. The built image stays in buildah's storage, tagged
``localhost/hoist:<key>``; ``$HOIST_IMAGE_CACHE`` (default ``~/.cache/hoist/image``) keeps a
manifest per key (image id, size, base, build time), so a test or ``make demo IMAGE=...``
finds a finished build without building again. Needs root (buildah's storage) and
``tools/system-deps.sh`` (buildah, debootstrap).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sim.kube.config import ImageRoot
from tools.guestimage import _locked  # one build at a time, as for the guests

ROOT = Path(__file__).resolve().parents[1]
CONTAINERFILE = ROOT / "Containerfile"
CONSTRAINTS = ROOT / "constraints-image.txt"
#: What the image is built from (the build context .dockerignore lets in).
CONTEXT_FILES = ("Containerfile", ".dockerignore", "pyproject.toml", "README.md")
CONTEXT_TREES = ("shared", "services", "cli")
PYTHON_IMAGE = "docker.io/library/python:3.11-slim-bookworm"
REPOSITORY = "localhost/hoist"
BASE_REPOSITORY = "localhost/hoist-python-base"
#: Bump when the base's recipe changes: an old base is then not used.
BASE_RECIPE = 1
SUITE = "bookworm"
MIRROR = os.environ.get("HOIST_DEBIAN_MIRROR", "http://deb.debian.org/debian")
#: What the Containerfile expects of its base beyond minbase (which has apt-get, and
#: useradd in passwd): ``python`` on PATH with venv and ensurepip, CA certificates for pip.
BASE_PACKAGES = ("python3", "python3-venv", "python-is-python3", "ca-certificates")
#: As the official slim images: packages installed later bring no documentation.
DPKG_EXCLUDES = """\
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
"""
#: As the official images: apt keeps no downloaded packages and no binary caches in a layer.
_CLEAN = (
    "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb"
    " /var/cache/apt/*.bin || true"
)
APT_CLEAN = (
    f'DPkg::Post-Invoke {{ "{_CLEAN}"; }};\n'
    f'APT::Update::Post-Invoke {{ "{_CLEAN}"; }};\n'
    'Dir::Cache::pkgcache "";\nDir::Cache::srcpkgcache "";\n'
)
SOURCES = f"""\
deb {MIRROR} {SUITE} main
deb {MIRROR} {SUITE}-updates main
deb http://deb.debian.org/debian-security {SUITE}-security main
"""
#: The build backend and installer, pinned with the rest (pip applies PIP_CONSTRAINT to
#: isolated build environments too).
BUILD_TOOLS = ("pip", "setuptools", "wheel")
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
BUILD_CA_BUNDLE = "/run/hoist-build-ca.crt"


class ImageBuildError(Exception):
    """The image could not be built; the message says which step and why."""


@dataclass(frozen=True)
class Built:
    """A finished image in buildah's storage."""

    ref: str
    image_id: str
    size: int
    base: str
    base_size: int
    build_seconds: float

    def describe(self) -> str:
        return (
            f"{self.ref} ({self.image_id[:12]}): {self.size / 1e6:.0f} MB "
            f"on {self.base} ({self.base_size / 1e6:.0f} MB), built in {self.build_seconds:.0f} s"
        )


def cache_root() -> Path:
    env = os.environ.get("HOIST_IMAGE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "hoist" / "image"


def missing_tools() -> list[str]:
    return [t for t in ("buildah", "debootstrap") if shutil.which(t) is None]


def _buildah(*args: str, log: Path | None = None, check: bool = True) -> str:
    argv = ["buildah", *args]
    if log is None:
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        err = done.stderr
    else:
        with log.open("a") as f:
            f.write("$ " + " ".join(argv) + "\n")
            f.flush()
            done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=f, text=True, check=False)
        err = log.read_text(errors="replace")[-3000:]
    if check and done.returncode != 0:
        raise ImageBuildError(f"{' '.join(argv)} failed:\n{err.strip()}")
    return done.stdout.strip() if done.returncode == 0 else ""


def image_info(ref: str) -> tuple[str, int] | None:
    """(id, size in bytes: its layers, uncompressed) of an image in local storage, or None."""
    out = _buildah("inspect", "--type", "image", ref, check=False)
    if not out:
        return None
    found = json.loads(out)
    layers = json.loads(found["Manifest"]).get("layers") or []
    return str(found["FromImageID"]), sum(int(layer["size"]) for layer in layers)


# -- the base ------------------------------------------------------------------------------


def base_ref() -> str:
    recipe = [BASE_RECIPE, SUITE, BASE_PACKAGES, DPKG_EXCLUDES, APT_CLEAN, SOURCES]
    h = hashlib.sha256(json.dumps(recipe).encode())
    return f"{BASE_REPOSITORY}:python3.11-{SUITE}-{h.hexdigest()[:12]}"


def ensure_base(log: Path) -> str:
    """The local base, built from Debian's packages unless already in storage."""
    ref = base_ref()
    if image_info(ref) is not None:
        return ref
    if os.geteuid() != 0:
        raise ImageBuildError("building the base needs root (debootstrap, buildah's storage)")
    work = Path(tempfile.mkdtemp(prefix=".base-", dir=_cache_dir()))
    rootfs = work / "rootfs"
    try:
        _logged(
            log,
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(BASE_PACKAGES)}",
                SUITE,
                str(rootfs),
                MIRROR,
            ],
        )
        _configure_base(rootfs)
        container = _buildah("from", "scratch", log=log)
        try:
            mount = Path(_buildah("mount", container, log=log))
            _logged(log, ["cp", "-a", f"{rootfs}/.", str(mount)])
            _buildah(
                "config",
                "--env",
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "--env",
                "LANG=C.UTF-8",
                "--cmd",
                "python3",
                "--label",
                f"org.opencontainers.image.description=Debian {SUITE} minbase with Python 3.11 "
                "(Hoist's local base, tools/containerimage.py)",
                container,
                log=log,
            )
            _buildah("commit", "--quiet", container, ref, log=log)
        finally:
            _buildah("rm", container, check=False)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return ref


def _configure_base(rootfs: Path) -> None:
    etc = rootfs / "etc"
    (etc / "apt" / "sources.list").write_text(SOURCES)
    (etc / "dpkg" / "dpkg.cfg.d" / "excludes").write_text(DPKG_EXCLUDES)
    (etc / "apt" / "apt.conf.d" / "docker-clean").write_text(APT_CLEAN)
    (etc / "apt" / "apt.conf.d" / "docker-no-recommends").write_text(
        'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n'
    )
    for tree in ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale"):
        for entry in (rootfs / tree).glob("*"):
            if tree == "usr/share/doc" and (entry / "copyright").exists():
                for other in entry.iterdir():
                    if other.name != "copyright":
                        _remove(other)
                continue
            _remove(entry)
    # A container runtime provides /dev; apt's caches and lists are refetched by apt-get update.
    for tree in ("dev", "var/cache/apt", "var/lib/apt/lists", "var/log", "tmp"):
        for entry in (rootfs / tree).glob("*"):
            _remove(entry)
    (rootfs / "var/lib/apt/lists/partial").mkdir(parents=True, exist_ok=True)
    (rootfs / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _logged(log: Path, argv: list[str]) -> None:
    with log.open("a") as f:
        f.write("$ " + " ".join(argv) + "\n")
        f.flush()
        done = subprocess.run(argv, stdout=f, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise ImageBuildError(f"{' '.join(argv)} failed:\n{tail}")


def registry_base(python_image: str, log: Path) -> bool:
    """Whether ``python_image`` is usable: in local storage, or pulled now."""
    if image_info(python_image) is not None:
        return True
    with log.open("a") as f:
        f.write(f"$ buildah pull {python_image}\n")
        f.flush()
        try:
            done = subprocess.run(
                ["buildah", "pull", "--quiet", python_image],
                stdout=f,
                stderr=subprocess.STDOUT,
                timeout=180,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return False
    return done.returncode == 0


# -- the image -----------------------------------------------------------------------------


def context_key(base: str) -> str:
    """What the image depends on: the build context and the base (by name; a registry
    base is pinned by its tag, the local one by its recipe)."""
    h = hashlib.sha256(base.encode() + b"\0")
    for name in CONTEXT_FILES:
        h.update(name.encode() + b"\0" + (ROOT / name).read_bytes() + b"\0")
    h.update(b"constraints\0" + CONSTRAINTS.read_bytes() + b"\0")
    for tree in CONTEXT_TREES:
        for path in sorted((ROOT / tree).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                rel = path.relative_to(ROOT).as_posix()
                h.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def choose_base(python_image: str | None, log: Path) -> str:
    """``python_image`` if given or reachable, else the local Debian base."""
    if python_image:
        return python_image
    if os.environ.get("HOIST_IMAGE_LOCAL_BASE") != "1" and registry_base(PYTHON_IMAGE, log):
        return PYTHON_IMAGE
    return ensure_base(log)


def cached(key: str) -> Built | None:
    manifest = cache_root() / key / "manifest.json"
    if not manifest.exists():
        return None
    data = json.loads(manifest.read_text())
    info = image_info(data["ref"])
    if info is None or info[0] != data["image_id"]:
        return None  # the storage was reset or the tag moved: build again
    return Built(**data)


def ensure(python_image: str | None = None, tags: tuple[str, ...] = ()) -> Built:
    """The image for this checkout, built first if missing (once per content and machine;
    concurrent callers wait for one build)."""
    lacking = missing_tools()
    if lacking:
        raise ImageBuildError(f"missing {', '.join(lacking)}: run tools/system-deps.sh")
    folder = _cache_dir()
    log = folder / "build.log"
    with _locked(folder / ".lock"):
        log.write_text("")
        base = choose_base(python_image, log)
        key = context_key(base)
        found = cached(key)
        if found is None:
            found = build(base, key, log)
        for tag in tags:
            _buildah("tag", found.ref, tag, log=log)
        return found


def build(base: str, key: str, log: Path) -> Built:
    ref = f"{REPOSITORY}:{key}"
    started = time.monotonic()
    # The CAs this machine trusts (a TLS-inspecting proxy's among them), for pip during
    # RUN only: a build-time volume is never committed into a layer.
    trust: list[str] = []
    if HOST_CA_BUNDLE.exists():
        trust = ["--volume", f"{HOST_CA_BUNDLE}:{BUILD_CA_BUNDLE}:ro"]
        trust += ["--build-arg", f"PIP_CERT={BUILD_CA_BUNDLE}"]
    _logged(
        log,
        [
            "buildah",
            "bud",
            "--isolation",
            "chroot",
            "--layers",
            "--pull-never" if base.startswith("localhost/") else "--pull=true",
            *trust,
            "--build-arg",
            f"PYTHON_IMAGE={base}",
            "--file",
            str(CONTAINERFILE),
            "--tag",
            ref,
            str(ROOT),
        ],
    )
    seconds = round(time.monotonic() - started, 1)
    info = image_info(ref)
    base_info = image_info(base)
    if info is None or base_info is None:
        raise ImageBuildError(f"{ref} was built but is not in storage")
    _forget_older(key)
    done = Built(ref, info[0], info[1], base, base_info[1], seconds)
    folder = cache_root() / key
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.json").write_text(json.dumps(done.__dict__, indent=2) + "\n")
    return done


def _forget_older(key: str) -> None:
    """Earlier builds of this checkout go, and the layers no tag names any more: each change
    of the sources would otherwise leave 160 MB behind. Other tags (``make image``'s
    ``localhost/hoist:0.1.0``) are kept."""
    names = _buildah("images", "--format", "{{.Name}}:{{.Tag}}", check=False).split()
    for name in names:
        repository, _, tag = name.rpartition(":")
        if repository == REPOSITORY and tag != key and re.fullmatch(r"[0-9a-f]{16}", tag):
            _buildah("rmi", name, check=False)
    for folder in cache_root().iterdir():
        if folder.name != key and re.fullmatch(r"[0-9a-f]{16}", folder.name):
            shutil.rmtree(folder, ignore_errors=True)
    _buildah("rmi", "--prune", check=False)


def _cache_dir() -> Path:
    folder = cache_root()
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# -- a running copy ------------------------------------------------------------------------


@contextlib.contextmanager
def mounted(ref: str) -> Iterator[ImageRoot]:
    """A working container of ``ref``, its root filesystem mounted on this machine, with
    what its config says a runtime starts processes with (the simulated kubelet runs
    containers of the image in it: ``sim.kube.config.ImageRoot``). Removed on exit. Its
    CMD is not taken: Hoist's image has none (pods pass their arguments)."""
    if image_info(ref) is None:
        raise ImageBuildError(f"no image {ref} in local storage: make image")
    config = json.loads(_buildah("inspect", "--type", "image", ref))["OCIv1"]["config"]
    container = _buildah("from", "--pull-never", "--quiet", ref)
    try:
        path = Path(_buildah("mount", container))
        env = dict(item.partition("=")[::2] for item in config.get("Env") or [])
        yield ImageRoot(
            path=path,
            env=env,
            workdir=config.get("WorkingDir") or "/",
            user=config.get("User") or "",
            entrypoint=list(config.get("Entrypoint") or []),
        )
    finally:
        _buildah("umount", container, check=False)
        _buildah("rm", container, check=False)


# -- the constraints -----------------------------------------------------------------------


def lock() -> str:
    """Every distribution ``pip install .`` takes for the image, pinned as resolved now
    (pip's own resolver on this machine's Python 3.11), plus pip and the build backend."""
    pins: dict[str, str] = {}
    for wanted in ([str(ROOT)], list(BUILD_TOOLS)):
        pins |= _resolve(wanted)
    pins.pop("hoist", None)
    lines = [
        "# Generated by `python -m tools.containerimage lock` from pyproject.toml: every",
        "# distribution the image installs, and pip with the build backend, at the version",
        "# it was built with. The Containerfile installs with these as constraints.",
        *(f"{name}=={version}" for name, version in sorted(pins.items())),
    ]
    return "\n".join(lines) + "\n"


def _resolve(requirements: list[str]) -> dict[str, str]:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        subprocess.run(
            [
                *(sys.executable, "-m", "pip", "install", "--quiet", "--dry-run"),
                *("--ignore-installed", "--report", str(report), *requirements),
            ],
            check=True,
            cwd=tmp,
            stderr=subprocess.DEVNULL,
        )
        resolved = json.loads(report.read_text())["install"]
    return {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in resolved}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.containerimage", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build the image unless cached; print it and its size")
    b.add_argument("--python-image", help=f"the base (default: {PYTHON_IMAGE} if reachable)")
    b.add_argument("--tag", action="append", default=[], help="also tag it so (repeatable)")
    sub.add_parser("base", help="build the local Debian base unless present; print it")
    lk = sub.add_parser("lock", help="regenerate constraints-image.txt")
    lk.add_argument("--check", action="store_true", help="exit 1 if it is out of date")
    args = parser.parse_args(argv)
    try:
        if args.command == "base":
            print(ensure_base(_cache_dir() / "base.log"))
        elif args.command == "lock":
            text = lock()
            if args.check:
                if CONSTRAINTS.read_text() != text:
                    print("constraints-image.txt is out of date: make lock", file=sys.stderr)
                    return 1
            else:
                CONSTRAINTS.write_text(text)
        else:
            built = ensure(args.python_image, tuple(args.tag))
            print(built.describe())
            print(built.ref)
    except ImageBuildError as exc:
        print(f"containerimage: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
