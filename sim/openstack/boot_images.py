"""The images image-backed servers boot from, made real in the real Glance.

``CloudState.boot_image`` picks each one's id when a server is added (so the server has its
``image.id`` at once); ``register`` then creates every image Glance does not have yet under
that id, public and owned by the admin project (as an operator's base images are), with the
scenario's ``image_properties`` as Glance properties, and uploads zero bytes so it is
``active``: ``image list`` shows it and the server's image resolves, at the cost of two calls
per distinct image (not per server), which keeps start-up fast.
"""

from __future__ import annotations

import logging

from sim.openstack.api import Sim
from sim.openstack.state import BootImage

log = logging.getLogger("sim.openstack")


async def register(sim: Sim) -> None:
    """Create (and make active) every boot image Glance does not have yet."""
    for image in list(sim.state.boot_images.values()):
        if not image.registered:
            await _register(sim, image)


async def _register(sim: Sim, image: BootImage) -> None:
    token = await sim.keystone.admin_token()
    meta = {
        "id": image.id,
        "name": image.name,
        "disk_format": "raw",
        "container_format": "bare",
        "visibility": "public",
        **image.properties,
    }
    async with sim.keystone.client() as c:
        r = await c.post(f"{sim.glance_url}/v2/images", json=meta, headers={"X-Auth-Token": token})
    if r.status_code == 409:  # made by an earlier call that was not marked (a race)
        image.registered = True
        return
    if r.status_code >= 400:
        raise RuntimeError(f"Glance refused boot image {image.name}: {r.status_code} {r.text}")
    await sim.upload(image.id, None)
    image.registered = True
