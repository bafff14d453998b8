"""Token checks as keystonemiddleware does them, against the real Keystone.

The simulated services accept a request only if Keystone says its ``X-Auth-Token`` is valid
now (cached 2 s, so a revoked token is refused within that); the simulator's own admin token
validates them and revokes tokens for the token-expiry fault.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from sim.certs import client_context
from sim.openstack.keystone_glance import password_token


@dataclass
class Keystone:
    """Validates callers' tokens against the real Keystone, as keystonemiddleware does, and
    holds the simulator's own admin token (for uploads and revocations)."""

    auth_url: str
    admin_password: str
    ca_file: Path
    _admin: str | None = None
    _cache: dict[str, tuple[float, dict[str, Any]]] = field(default_factory=dict)

    def client(self, timeout: httpx.Timeout | float = 60) -> httpx.AsyncClient:
        return httpx.AsyncClient(verify=client_context(self.ca_file), timeout=timeout)

    async def admin_token(self, *, fresh: bool = False) -> str:
        if self._admin is None or fresh:
            self._admin, _ = await password_token(
                self.auth_url, "admin", self.admin_password, "admin", ca_file=self.ca_file
            )
        return self._admin

    async def validate(self, token: str) -> dict[str, Any] | None:
        """The token's body if Keystone accepts it now (cached 2 s), else None."""
        hit = self._cache.get(token)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        for fresh in (False, True):
            headers = {
                "X-Auth-Token": await self.admin_token(fresh=fresh),
                "X-Subject-Token": token,
            }
            async with self.client() as c:
                r = await c.get(f"{self.auth_url}/auth/tokens", headers=headers)
            if r.status_code == 401 and not fresh:
                continue  # our own admin token expired
            if r.status_code != 200:
                return None
            body: dict[str, Any] = r.json()["token"]
            self._cache[token] = (time.monotonic() + 2, body)
            return body
        return None

    async def revoke(self, token: str) -> None:
        self._cache.pop(token, None)
        headers = {"X-Auth-Token": await self.admin_token(), "X-Subject-Token": token}
        async with self.client() as c:
            await c.delete(f"{self.auth_url}/auth/tokens", headers=headers)

    async def revoke_seen(self) -> int:
        """Revoke every token a service has validated (not the simulator's own); how many."""
        tokens = [t for t in self._cache if t != self._admin]
        for token in tokens:
            await self.revoke(token)
        return len(tokens)
