"""A stand-in populator for the progress tests: the populators' own metrics server
(``services.populators.common.metrics``) with counters that advance at a set rate, no copy.

``--mode garbage`` serves a page that is not Prometheus text, ``--mode other-owner`` one
whose samples belong to another PVC: what a broken or misconfigured pod would serve.
Runs until killed (the progress service, not this program, decides when a disk is done).
"""

from __future__ import annotations

import argparse
import asyncio

from services.populators.common.metrics import MetricsServer, Progress


class Garbage(Progress):
    def render(self) -> str:
        return "<html><body>502 Bad Gateway {{{</body></html>\n"


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--owner-uid", required=True)
    p.add_argument("--total", type=int, default=1 << 30)
    p.add_argument("--rate", type=int, default=1 << 20, help="bytes per second")
    p.add_argument("--metric", default="openstack_populator_progress")
    p.add_argument("--mode", choices=("ok", "garbage", "other-owner"), default="ok")
    p.add_argument("--port", type=int, default=8443)
    args = p.parse_args()
    owner = "someone-else" if args.mode == "other-owner" else args.owner_uid
    progress = (Garbage if args.mode == "garbage" else Progress)(args.metric, owner)
    progress.set_total(args.total)
    server = await MetricsServer.start(progress, args.port)
    step = 0.1
    try:
        while True:
            await asyncio.sleep(step)
            if progress.transferred < args.total:
                progress.add(min(int(args.rate * step), args.total - progress.transferred))
            elif not progress.finished:
                progress.done()
    finally:
        await server.stop()


if __name__ == "__main__":
    asyncio.run(main())
