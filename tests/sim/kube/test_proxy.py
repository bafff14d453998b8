"""The pod proxy: how a client outside the pod network reaches a pod's port.

Hoist's progress service scrapes populator pods' `/metrics` (TLS, self-signed) either at
the pod IP or through `/api/v1/namespaces/{ns}/pods/https:{pod}:8443/proxy/metrics`; both
paths must reach the very process the kubelet started.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiException

from sim import certs
from sim.kube.cluster import Cluster
from sim.kube.config import ClusterConfig

SERVER = """
import http.server, os, ssl, sys
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"path={self.path} pod={os.environ['POD_NAME']}\\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
server = http.server.HTTPServer((os.environ["POD_IP"], int(sys.argv[1])), Handler)
if len(sys.argv) > 2:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(sys.argv[2], sys.argv[3])
    server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
"""


@pytest.fixture
def cluster_config(tmp_path: Path) -> ClusterConfig:
    return ClusterConfig(storage_root=tmp_path / "volumes", images={"python": [sys.executable]})


def server_pod(name: str, port: int, *tls: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "containers": [
                {
                    "name": "server",
                    "image": "python",
                    "args": ["-c", SERVER, str(port), *tls],
                    "ports": [{"name": "metrics", "containerPort": port}],
                    "env": [
                        {
                            "name": "POD_IP",
                            "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}},
                        },
                        {
                            "name": "POD_NAME",
                            "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
                        },
                    ],
                }
            ]
        },
    }


async def running(core: client.CoreV1Api, name: str) -> Any:
    for _ in range(200):
        pod = await core.read_namespaced_pod(name, "default")
        if pod.status.phase == "Running":
            return pod
        await asyncio.sleep(0.05)
    raise AssertionError(f"pod {name} never ran")


async def proxied(core: client.CoreV1Api, target: str, path: str) -> str:
    for _ in range(100):  # the server may still be binding its port
        try:
            reply: str = await core.connect_get_namespaced_pod_proxy_with_path(
                target, "default", path
            )
            return reply
        except ApiException as error:
            if error.status != 503:
                raise
            await asyncio.sleep(0.05)
    raise AssertionError(f"{target} never answered")


async def test_proxy_reaches_plain_and_tls_pods(
    cluster: Cluster, api: client.ApiClient, tmp_path: Path
) -> None:
    core = client.CoreV1Api(api)
    cert = certs.issue(tmp_path / "tls", ["127.0.0.1"])
    await core.create_namespaced_pod("default", server_pod("plain", 8080))
    await core.create_namespaced_pod(
        "default", server_pod("secure", 8443, str(cert.cert_file), str(cert.key_file))
    )
    plain = await running(core, "plain")
    secure = await running(core, "secure")
    assert plain.status.pod_ip != secure.status.pod_ip
    assert plain.status.pod_ip.startswith("127.42.")

    assert await proxied(core, "plain:8080", "metrics") == "path=/metrics pod=plain\n"
    assert await proxied(core, "https:secure:8443", "metrics") == "path=/metrics pod=secure\n"
    # The port may be left out when the pod declares one.
    assert await proxied(core, "plain", "x") == "path=/x pod=plain\n"

    with pytest.raises(ApiException) as missing:
        await core.connect_get_namespaced_pod_proxy_with_path("ghost:8080", "default", "m")
    assert missing.value.status == 404
