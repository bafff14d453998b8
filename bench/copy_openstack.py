"""Benchmark: Hoist's OpenStack populator against curl and openstacksdk, same Glance, same run.

One real Glance (over TLS, behind a real Keystone) holds one raw image made the way a
migration makes it: a boot volume uploaded with ``os-volume_upload_image``. Each round copies
it several ways (after one uncounted warm-up round), interleaved so machine noise hits all
alike: Hoist's populator process (the pod's program, with its checksum verification and
sparse writes) given the same token as curl through its ``token`` Secret key; the
verifying baseline, ``curl | tee <file> | <algo>sum`` with that token, whose digest is then
compared with Glance's ``os_hash_value`` (the same work as the populator: the stream
written to a file and hashed with the algorithm Glance recorded, ``os_hash_algo``, which is
the one the populator verifies: ``--glance-hash``, SHA-512 by default as in Glance);
``curl -o`` alone (the plain stream, no verification); openstacksdk's own
``download_image`` to a file (which verifies the MD5); and, as an extra figure, the
populator authenticating with the password (Keystone's bcrypt check, ~0.3 s more).
Reported: MiB/s of the image size, Hoist's ratio to each, peak RSS of each process, and the
target file's allocated size against the source volume's.

Targets: ``ratio_vs_curl_verifying`` >= 1.0 (the populator at least as fast as the
baseline that verifies as much as it does); bare curl's ratio (``ratio_vs_curl``) is kept
as a figure only, informational: curl alone skips the hash, which is most of the
populator's CPU per byte (docs/openstack.md).
"""

from __future__ import annotations

import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._report import emit, parser, target
from sim.openstack import scenario as sc
from sim.openstack.cloud import Cloud, running_cloud

MiB = 1 << 20
REPO = Path(__file__).resolve().parents[1]
SDK_SCRIPT = """
import sys, openstack
conn = openstack.connect(auth_url=sys.argv[1], username=sys.argv[2], password=sys.argv[3],
    project_name=sys.argv[4], user_domain_id="default", project_domain_id="default",
    cacert=sys.argv[5])
conn.image.download_image(sys.argv[6], output=sys.argv[7], chunk_size=8 << 20)
"""


def _hwm(pid: int) -> int:
    """VmHWM (peak RSS of the process's own memory since its exec), 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def timed(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, int, str]:
    """Run to completion; (seconds, peak RSS in bytes, stderr). The peak is sampled from VmHWM every
    20 ms: wait4's ru_maxrss would count the benchmark's own memory, inherited at fork."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        argv, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    peak = 0
    while proc.poll() is None:
        peak = max(peak, _hwm(proc.pid))
        time.sleep(0.02)
    seconds = time.perf_counter() - started
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({proc.returncode}): {err[-2000:]}")
    return seconds, peak, err


def stream_rate(log: str) -> float:
    """The populator's own figure for the data phase (after authentication and metadata)."""
    match = re.search(r"streamed \d+ bytes in [\d.]+ s \((\d+) MiB/s\)", log)
    return float(match.group(1)) if match else 0.0


def verifying_argv(token: str, ca_file: Path, url: str, out: Path, algo: str) -> list[str]:
    """curl's stream into ``out`` and through ``<algo>sum`` at once (``tee``), the digest
    into ``out.sum``; ``pipefail``: a failed curl fails the run."""
    curl = f"curl -sS -f --cacert {shlex.quote(str(ca_file))} "
    curl += f"-H {shlex.quote(f'X-Auth-Token: {token}')} {shlex.quote(url)}"
    sums = shlex.quote(f"{out}.sum")
    script = f"set -o pipefail; {curl} | tee {shlex.quote(str(out))} | {algo}sum > {sums}"
    return ["bash", "-c", script]


def make_image(cloud: Cloud) -> str:
    conn = cloud.connection()
    try:
        vol = next(v for v in conn.block_storage.volumes() if v.name == "bench-root")
        out = conn.block_storage.upload_volume_to_image(
            vol, "bench-image", force=True, disk_format="raw", container_format="bare"
        )
        image_id = str(out["image_id"])
        while conn.image.get_image(image_id).status != "active":
            time.sleep(0.2)
        return image_id
    finally:
        conn.close()


def run(size_mib: int, data_mib: int, rounds: int, hashing: str) -> dict[str, Any]:
    scenario = sc.Scenario(
        servers=[
            sc.Server(
                name="bench",
                flavor="m1.small",
                boot="volume",
                root=sc.Disk(size_mib=size_mib, data_mib=data_mib),
            )
        ]
    )
    hoist: list[float] = []
    hoist_pw: list[float] = []
    curl: list[float] = []
    verifying: list[float] = []
    sdk: list[float] = []
    streamed: list[float] = []
    rss: dict[str, int] = {"hoist": 0, "curl": 0, "sdk": 0}
    with running_cloud(scenario, image_proxy=False, hashing=hashing) as cloud:
        vol = next(v for v in cloud.state.volumes.values() if v.name == "bench-root")
        vol.name = "bench-root"
        image_id = make_image(cloud)
        size = vol.path.stat().st_size
        source_alloc = vol.path.stat().st_blocks * 512
        conn = cloud.connection()
        token = conn.session.get_token()
        meta = conn.image.get_image(image_id)
        algo, expected = str(meta.hash_algo), str(meta.hash_value)
        conn.close()
        # Like curl, the populator is handed the token (Forklift's `token` Secret key); the
        # password run is the extra figure.
        pw_env = {"PATH": os.environ.get("PATH", ""), **cloud.credentials()}
        env = {k: v for k, v in pw_env.items() if k not in ("username", "password")}
        env["token"] = token
        url = f"{cloud.glance_url}/v2/images/{image_id}/file"
        target_alloc = 0
        with tempfile.TemporaryDirectory(prefix="hoist-bench-", dir=REPO) as tmp:
            out = Path(tmp)
            for n in range(rounds + 1):
                warm = n > 0  # round 0 warms Glance's workers and the page cache: not counted
                argv = [
                    sys.executable, "-m", "services.populators.openstack",
                    "--volume-path", str(out), "--owner-uid", "bench", "--pvc-size", "0",
                    "--endpoint", cloud.auth_url, "--image-id", image_id, "--metrics-port", "0",
                ]  # fmt: skip
                seconds, peak, log = timed(argv, env)
                if warm:
                    hoist.append(size / seconds / MiB)
                    streamed.append(stream_rate(log))
                rss["hoist"] = max(rss["hoist"], peak)
                target_alloc = (out / "disk.img").stat().st_blocks * 512
                (out / "disk.img").unlink()
                hoist_argv = argv

                argv = ["curl", "-sS", "-f", "--cacert", str(cloud.ca_file)]
                argv += ["-H", f"X-Auth-Token: {token}", "-o", str(out / "curl.img"), url]
                seconds, peak, _ = timed(argv)
                if warm:
                    curl.append(size / seconds / MiB)
                rss["curl"] = max(rss["curl"], peak)
                (out / "curl.img").unlink()

                argv = verifying_argv(token, cloud.ca_file, url, out / "verify.img", algo)
                seconds, _, _ = timed(argv)
                digest = (out / "verify.img.sum").read_text().split()[0]
                if digest != expected:
                    raise RuntimeError(f"curl | {algo}sum: {digest} != Glance's {expected}")
                if warm:
                    verifying.append(size / seconds / MiB)
                (out / "verify.img").unlink()

                s = cloud.scenario
                argv = [sys.executable, "-c", SDK_SCRIPT, cloud.auth_url, s.user, s.password]
                argv += [s.project, str(cloud.ca_file), image_id, str(out / "sdk.img")]
                seconds, peak, _ = timed(argv)
                if warm:
                    sdk.append(size / seconds / MiB)
                rss["sdk"] = max(rss["sdk"], peak)
                (out / "sdk.img").unlink()

                seconds, peak, _ = timed(hoist_argv, pw_env)
                if warm:
                    hoist_pw.append(size / seconds / MiB)
                rss["hoist"] = max(rss["hoist"], peak)
                (out / "disk.img").unlink()
    med = statistics.median
    figures: dict[str, Any] = {
        "image_mib": size // MiB,
        "image_data_mib": data_mib,
        "glance_hash": hashing,
        "rounds": rounds,
        "hoist_mib_s": round(med(hoist)),
        "hoist_stream_mib_s": round(med(streamed)),
        "hoist_password_auth_mib_s": round(med(hoist_pw)),
        "curl_mib_s": round(med(curl)),
        "curl_verifying_mib_s": round(med(verifying)),
        "sdk_mib_s": round(med(sdk)),
        "ratio_vs_curl_verifying": round(med(hoist) / med(verifying), 3),
        "ratio_vs_curl": round(med(hoist) / med(curl), 3),
        "ratio_vs_sdk": round(med(hoist) / med(sdk), 3),
        "password_auth_ratio_vs_curl": round(med(hoist_pw) / med(curl), 3),
        "hoist_rss_mib": round(rss["hoist"] / MiB, 1),
        "curl_rss_mib": round(rss["curl"] / MiB, 1),
        "sdk_rss_mib": round(rss["sdk"] / MiB, 1),
        "target_allocated_mib": round(target_alloc / MiB, 1),
        "source_allocated_mib": round(source_alloc / MiB, 1),
        "allocated_vs_source": round(target_alloc / max(source_alloc, 1), 3),
    }
    targets = {
        "ratio_vs_curl_verifying": target(figures["ratio_vs_curl_verifying"], ">=", 1.0),
        "allocated_vs_source": target(figures["allocated_vs_source"], "<=", 1.0),
    }
    return {"bench": "copy_openstack", "figures": figures, "targets": targets}


def main() -> int:
    p = parser(__doc__)
    p.add_argument("--size-mib", type=int, default=1024)
    p.add_argument("--data-mib", type=int, default=512)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--glance-hash", default="sha512", help="Glance's hashing_algorithm")
    args = p.parse_args()
    return emit(run(args.size_mib, args.data_mib, args.rounds, args.glance_hash), args.json)


if __name__ == "__main__":
    sys.exit(main())
