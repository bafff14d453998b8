"""Benchmark: Hoist's oVirt populator against ovirt-imageio's own client, same image, same
imageio daemon over TLS, runs interleaved (this machine is noisy), plus ``cp --sparse=always``
of the source file for reference.

Both clients do the same work: copy the disk and verify the copy with imageio's checksum.
Hoist's populator hashes the blocks as it writes them and compares with imageio's
``GET /checksum``, asked at the start and computed by the daemon meanwhile
(``services/populators/ovirt/verify.py``). The imageio client baseline (``CLIENT``) asks the
same ``GET /checksum`` (same algorithm and block size as Hoist, ``shared.populator.checksum``)
in a thread at the start, runs ``ovirt_imageio.client.download``, then its client's own
``checksum`` of the downloaded file (the imageio client's way to checksum a local image:
qemu-nbd reads it back, its child, counted in its CPU) and compares the two.

Cases: ``large`` (8 GiB virtual, 4 GiB of data in large extents) and ``scattered``
(64 GiB virtual, 1 GiB of data in scattered 1 MiB extents), with ``dense`` (the same 1 GiB of
data stored dense) to show what scattering costs. Figures are medians: MiB/s of data, client
CPU seconds per GiB of data (user+system of the client process and its children, from
``wait4``), peak RSS, and ratios to the imageio client.

Targets: at least the imageio client's speed on the large case (both are bound by the
daemon and qemu-nbd on two cores), at most half its CPU per GiB on the large and the
scattered case (CPU per byte is what a pod under a CPU limit turns into throughput).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.populator.checksum import BLOCK_SIZE, PREFERRED
from sim.ovirt import scenario
from sim.ovirt.engine import Engine
from sim.ovirt.images import data_extents
from sim.ovirt.sdkclient import connect, download_transfer

GiB = 1 << 30
MiB = 1 << 20
CASES = {
    "large": {"size": 8 * GiB, "allocated": 0.5, "layout": "large", "extent": 256 * MiB},
    "scattered": {"size": 64 * GiB, "allocated": 1 / 64, "layout": "scattered", "extent": MiB},
    "dense": {"size": GiB, "allocated": 1.0, "layout": "large", "extent": GiB},
}
CLIENT = """
import http.client, json, ssl, sys, threading, urllib.parse
from ovirt_imageio.client import checksum, download
url, out, ca, algorithm, block_size = sys.argv[1:6]
parts, theirs = urllib.parse.urlsplit(url), {}
def ask():
    conn = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=3600,
        context=ssl.create_default_context(cafile=ca))
    conn.request("GET", f"{parts.path}/checksum?algorithm={algorithm}&block_size={block_size}")
    theirs.update(json.loads(conn.getresponse().read()))
asking = threading.Thread(target=ask)
asking.start()
download(url, out, ca, fmt="raw")
ours = checksum(out, block_size=int(block_size), algorithm=algorithm)["checksum"]
asking.join()
if ours != theirs.get("checksum"):
    sys.exit(f"checksum mismatch: {ours} against imageio's {theirs}")
"""


@dataclass
class Sample:
    seconds: float
    cpu: float
    rss_mib: float
    log: str = ""


def _hwm_mib(pid: int) -> float:
    """Peak RSS of the running process (VmHWM: of its own image, not the parent's at fork)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def measured(argv: list[str], env: dict[str, str] | None = None) -> Sample:
    """Run ``argv``: wall time, CPU of it and its reaped children (wait4), and its peak RSS
    (sampled from /proc every 20 ms: wait4's ru_maxrss counts the parent's pages at fork)."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0.0
    stop = threading.Event()

    def sample_rss() -> None:
        nonlocal peak
        while not stop.wait(0.02):
            peak = max(peak, _hwm_mib(proc.pid))

    sampler = threading.Thread(target=sample_rss, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    stop.set()
    sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[:3]} failed ({proc.returncode}): {err[-2000:]}")
    return Sample(seconds, usage.ru_utime + usage.ru_stime, peak, err)


def compile_sources() -> None:
    """Compile Hoist's sources to bytecode (``__pycache__``, git-ignored) before measuring.

    Why: the imageio client runs from bytecode that pip compiled when it installed it, and
    an installed populator would too; with ``PYTHONDONTWRITEBYTECODE`` set (as on the
    development VMs) every populator start would compile its sources again, ~40 ms of CPU
    that an installed one does not pay (3-4% of the scattered case's CPU per GiB). Python
    still reads bytecode that exists while that variable is set."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", "services", "shared"], env=env, check=True
    )


def populator(engine: Engine, disk_id: str, out: Path) -> Sample:
    env = {
        **os.environ,
        "user": "admin@internal",
        "password": "secret",
        "cacert": engine.cert.ca_pem,
    }
    argv = [
        sys.executable, "-m", "services.populators.ovirt", f"--volume-path={out}",
        "--owner-uid=bench", f"--engine-url={engine.api_url}", f"--disk-id={disk_id}",
        "--metrics-port=0",
    ]  # fmt: skip
    sample = measured(argv, env)
    if "block checksum verified" not in sample.log:
        raise RuntimeError(f"the populator verified no checksum: {sample.log[-2000:]}")
    return sample


def imageio_client(engine: Engine, disk_id: str, out: Path) -> Sample:
    conn = connect(engine)
    try:
        with download_transfer(conn, disk_id) as (transfer, _):
            return measured(
                [sys.executable, "-c", CLIENT, transfer.transfer_url, str(out / "disk.img"),
                 str(engine.cert.ca_file), PREFERRED[0], str(BLOCK_SIZE)]
            )  # fmt: skip
    finally:
        conn.close()


def cp(source: Path, out: Path) -> Sample:
    return measured(["cp", "--sparse=always", str(source), str(out / "disk.img")])


async def main_async(rounds: int, workdir: Path) -> dict[str, Any]:
    doc = {"disks": [{"name": name, "format": "raw", **spec} for name, spec in CASES.items()]}
    inv, _ = scenario.from_dict(doc)
    samples: dict[str, dict[str, list[Sample]]] = {c: {} for c in CASES}
    data: dict[str, int] = {}
    async with Engine(inv, [], workdir / "engine") as engine:
        for name in CASES:
            disk = inv.disk_by_name(name)
            data[name] = sum(length for _, length in data_extents(disk.image))
            print(f"making {name}: {disk.provisioned_size >> 20} MiB virtual, "
                  f"{data[name] >> 20} MiB data", file=sys.stderr, flush=True)  # fmt: skip
            await engine.image_path(disk.id)
        out = workdir / "out"
        compile_sources()
        for r in range(rounds):
            for name in CASES:
                disk = inv.disk_by_name(name)
                src = await engine.image_path(disk.id)
                tools = {
                    "hoist": functools.partial(populator, engine, disk.id, out),
                    "imageio": functools.partial(imageio_client, engine, disk.id, out),
                    "cp": functools.partial(cp, src, out),
                }
                if name == "dense":
                    tools = {"hoist": tools["hoist"]}
                order = list(tools) if r % 2 == 0 else list(reversed(tools))
                for tool in order:
                    out.mkdir(exist_ok=True)
                    sample = await asyncio.to_thread(tools[tool])
                    shutil.rmtree(out)
                    samples[name].setdefault(tool, []).append(sample)
                    rate = data[name] / MiB / sample.seconds
                    print(
                        f"round {r} {name:9} {tool:7} {sample.seconds:6.2f} s {rate:7.0f} MiB/s "
                        f"cpu {sample.cpu:5.2f} s rss {sample.rss_mib:5.0f} MiB",
                        file=sys.stderr,
                        flush=True,
                    )
    med = statistics.median
    figures: dict[str, float] = {}
    for name, by_tool in samples.items():
        for tool, runs in by_tool.items():
            gib = data[name] / GiB
            figures[f"{name}_{tool}_mib_s"] = round(med(data[name] / MiB / s.seconds for s in runs))
            figures[f"{name}_{tool}_cpu_s_per_gib"] = round(med(s.cpu / gib for s in runs), 2)
            figures[f"{name}_{tool}_rss_mib"] = round(max(s.rss_mib for s in runs))
        if "imageio" in by_tool:
            figures[f"{name}_speed_vs_imageio"] = round(
                figures[f"{name}_hoist_mib_s"] / figures[f"{name}_imageio_mib_s"], 2
            )
            figures[f"{name}_cpu_vs_imageio"] = round(
                figures[f"{name}_hoist_cpu_s_per_gib"] / figures[f"{name}_imageio_cpu_s_per_gib"],
                2,
            )
    figures["scattered_time_vs_dense"] = round(
        med(s.seconds for s in samples["scattered"]["hoist"])
        / med(s.seconds for s in samples["dense"]["hoist"]),
        2,
    )
    figures["hoist_peak_rss_mib"] = max(figures[f"{c}_hoist_rss_mib"] for c in CASES)
    limits = {
        "large_speed_vs_imageio": (">=", 1.0),
        "large_cpu_vs_imageio": ("<=", 0.5),
        "scattered_cpu_vs_imageio": ("<=", 0.5),
        "scattered_time_vs_dense": ("<=", 2.0),
        "hoist_peak_rss_mib": ("<=", 150),
    }
    targets = {
        key: {
            "value": figures[key],
            "target": f"{op} {limit}",
            "met": figures[key] >= limit if op == ">=" else figures[key] <= limit,
        }
        for key, (op, limit) in limits.items()
    }
    return {"bench": "copy_ovirt", "figures": figures, "targets": targets}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None, help="needs ~16 GiB free")
    parser.add_argument("--json", action="store_true", help="print the result object last")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hoist-bench-ovirt-", dir=args.workdir) as tmp:
        result = asyncio.run(main_async(args.rounds, Path(tmp)))
    for key, value in result["figures"].items():
        print(f"{key:>32}: {value}")
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
