"""Reading one populator pod's ``/metrics``: fetching it (pod IP or pod proxy) and parsing it.

The page is the populator contract's (``shared.populator``: ``render_metrics`` writes it,
``parse_metrics`` reads it with ``prometheus_client``'s parser, never a regex, so a
reordered or extended page still parses). A populator labels its samples with the user
PVC's UID (``ownerUID``); Hoist's populators serve, besides Forklift's percent, the byte
counters, which make rates and ETAs exact. A Forklift-only populator (percent alone) still
works: bytes are then percent x the disk size announced by the orchestrator.

TLS: every populator pod makes itself a fresh self-signed certificate when it starts (as
Forklift's do); there is no CA to verify it against and nothing stable to pin, and the pod
is found by its IP, not by a name a certificate could carry. So the certificate is not
verified: TLS here only keeps the numbers private on the wire. What an impostor at a pod IP
could do is report false progress, which misleads a chart but moves no data; the pod IPs
themselves come from the API server (events or the pod watch). Through the pod proxy, the
API server's own certificate is verified as the cluster's credentials say.
"""

from __future__ import annotations

import ssl

import aiohttp
from kubernetes_asyncio.client.exceptions import ApiException

from services.progress.targets import Target
from shared import populator as contract
from shared.clusters import Clusters
from shared.kube import Kube
from shared.settings import ProgressSettings

Sample = contract.Sample
"""What one page says about one disk (the contract's; ``recording`` stores it)."""
MAX_PAGE = 1 << 20  # a populator's page is ~600 bytes; anything near this is not one


class ScrapeError(Exception):
    """One scrape failed (pod gone, timeout, garbage); the next round tries again."""


def parse(page: str, owner_uid: str) -> Sample:
    """The sample of ``owner_uid`` in ``page``; ``ScrapeError`` when there is none or the
    page is not Prometheus text (the contract's reason, which the scheduler logs)."""
    try:
        return contract.parse_metrics(page, owner_uid)
    except contract.MetricsError as exc:
        raise ScrapeError(str(exc)) from None


def insecure_context() -> ssl.SSLContext:
    """TLS without verification, for pods' self-signed certificates (see the module doc)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Fetcher:
    """Fetches pages: directly by pod IP, or through the API server's pod proxy."""

    def __init__(self, settings: ProgressSettings, clusters: Clusters) -> None:
        self.settings = settings
        self.clusters = clusters
        self._timeout = aiohttp.ClientTimeout(total=settings.timeout_seconds)
        # One persistent connection per pod (Hoist's populators keep it open): the TLS
        # handshake, most of a scrape's CPU, is paid once per pod instead of every
        # interval. Idle connections outlive a few intervals; a pod that closes its own
        # (Forklift's) just costs a new one. The limit is the scheduler's concurrency.
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                ssl=insecure_context(),
                limit=0,
                limit_per_host=1,
                keepalive_timeout=max(30.0, 4 * settings.scrape_seconds),
                enable_cleanup_closed=True,
            ),
            timeout=self._timeout,
            skip_auto_headers=("User-Agent",),
        )

    async def close(self) -> None:
        await self._session.close()

    async def route(self, t: Target) -> str:
        """``direct`` or ``proxy`` for this target, as ``HOIST_PROGRESS_VIA`` says."""
        via = self.settings.via
        if via == "proxy" or not t.pod_ip:
            return "proxy"
        if via == "direct":
            return "direct"
        return "proxy" if await self.clusters.is_remote(t.cluster_id) else "direct"

    async def fetch(self, t: Target) -> str:
        if await self.route(t) == "direct":
            return await self._direct(t)
        return await self._proxy(t)

    async def _direct(self, t: Target) -> str:
        host = f"[{t.pod_ip}]" if t.pod_ip and ":" in t.pod_ip else t.pod_ip
        url = f"{t.metrics_scheme}://{host}:{t.metrics_port}/{contract.METRICS_PATH}"
        try:
            async with self._session.get(url) as resp:
                body = await resp.content.read(MAX_PAGE + 1)
                if resp.status != 200:
                    raise ScrapeError(f"{url} answered {resp.status}")
        except (aiohttp.ClientError, OSError) as exc:
            raise ScrapeError(f"{url}: {type(exc).__name__}: {exc}") from None
        except TimeoutError:
            raise ScrapeError(
                f"{url}: no answer within {self.settings.timeout_seconds} s"
            ) from None
        if len(body) > MAX_PAGE:
            raise ScrapeError(f"{url}: page larger than {MAX_PAGE} bytes")
        return body.decode("utf-8", errors="replace")

    async def _proxy(self, t: Target) -> str:
        kube = Kube(await self.clusters.api(t.cluster_id))
        try:
            return await kube.proxy(
                t.namespace,
                t.pod,
                t.metrics_port,
                contract.METRICS_PATH,
                scheme=t.metrics_scheme,
                timeout=self.settings.timeout_seconds,
            )
        except ApiException as exc:
            raise ScrapeError(
                f"pod proxy {t.namespace}/{t.pod} in cluster {t.cluster_id}: {exc.status} "
                f"{exc.reason}"
            ) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise ScrapeError(f"API server of cluster {t.cluster_id}: {exc}") from None
        except TimeoutError:
            raise ScrapeError(
                f"pod proxy {t.namespace}/{t.pod}: no answer within "
                f"{self.settings.timeout_seconds} s"
            ) from None
