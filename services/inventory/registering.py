"""Creating, changing and deleting providers: the workflows behind the providers API.

Order of a create, and why: check the definition (cheap, every problem at once) -> test the
connection with the given credentials (so a typo is reported now, not as a failed provider
later) -> insert the row and write the Secret in one transaction (row first, so a duplicate
name fails before anything reaches Kubernetes) -> commit -> wake the collectors.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from services.inventory import db, providers
from services.inventory.collecting import Collectors
from services.inventory.providers import ProviderCreate, ProviderUpdate, TlsSpec
from services.inventory.secrets import SecretStore
from services.inventory.sources import source_class
from services.inventory.sources.contract import ConnectionProblem, ProviderInfo, SourceContext
from shared import catalog
from shared.payloads import ProviderPhase, ProviderStatusChanged, ProviderType
from shared.populator.trust import INSECURE_SKIP_VERIFY, FlagError, parse_flag
from shared.service.errors import Conflict, Invalid
from shared.service.runtime import Runtime

log = logging.getLogger("hoist.inventory.providers")


@dataclass
class Registry:
    runtime: Runtime
    secrets: SecretStore
    collectors: Collectors

    async def test_connection(
        self, provider_id: str, info: ProviderInfo, secret: Mapping[str, str]
    ) -> dict[str, Any]:
        """Probe with these credentials; ``Invalid`` naming the field at fault if it fails."""
        context = SourceContext(
            calls=self.collectors.blocking.for_provider(f"probe-{provider_id}"),
            settings=self.runtime.settings.inventory,
            kube=self.runtime.settings.kube,
        )
        source = source_class(info.type)(info, secret, context)
        try:
            return await source.probe()
        except ConnectionProblem as problem:
            raise providers.connection_failed(problem) from None
        finally:
            with contextlib.suppress(Exception):
                await source.close()
            self.collectors.blocking.forget(f"probe-{provider_id}")

    async def create(self, spec: ProviderCreate, *, test: bool) -> Any:
        providers.check_definition(spec.type, spec.url, spec.credentials, spec.tls)
        pid = providers.new_id()
        secret = providers.secret_data(spec.url, spec.credentials, spec.tls)
        info = ProviderInfo(pid, spec.name, spec.type, spec.url, _settings(spec.settings))
        async with self.runtime.sessionmaker() as session:
            await self._name_free(session, spec.name)
        facts = await self.test_connection(pid, info, secret) if test else {}
        namespace = self.runtime.settings.kube.namespace
        written = False
        try:
            async with self.runtime.sessionmaker() as session, session.begin():
                await session.execute(
                    insert(db.providers).values(
                        id=pid,
                        name=spec.name,
                        type=spec.type.value,
                        url=spec.url,
                        settings=_settings(spec.settings),
                        tls=spec.tls.public(),
                        secret_namespace=namespace,
                        secret_name=providers.secret_name(pid),
                        phase=ProviderPhase.STAGING.value,
                        conditions=[
                            providers.condition(
                                "Connected",
                                test,
                                "ConnectionTested" if test else "NotTested",
                                "" if test else "created without a connection test",
                            )
                        ],
                        facts=facts,
                        revision=db.revision_seq.next_value(),
                    )
                )
                await self.secrets.put(pid, secret, spec.type.value)
                written = True
        except IntegrityError:
            if written:
                await self._forget_secret(pid)
            raise Conflict(["body", "name"], f"a provider named {spec.name!r} exists") from None
        except BaseException:
            if written:
                await self._forget_secret(pid)
            raise
        self.collectors.kick()
        async with self.runtime.sessionmaker() as session:
            return await providers.find(session, pid)

    async def update(self, ref: str, change: ProviderUpdate, *, test: bool) -> Any:
        async with self.runtime.sessionmaker() as session:
            row = await providers.find(session, ref)
        pid, ptype = row["id"], ProviderType(row["type"])
        old = await self.secrets.get(pid)
        url = row["url"] if change.url is None else change.url
        credentials = (
            {k: v for k, v in old.items() if k not in providers.RESERVED_KEYS}
            if change.credentials is None
            else change.credentials
        )
        tls = change.tls if change.tls is not None else _tls_of(old)
        settings = row["settings"] if change.settings is None else _settings(change.settings)
        providers.check_definition(ptype, url, credentials, tls)
        secret = providers.secret_data(url, credentials, tls)
        if test:
            info = ProviderInfo(pid, row["name"], ptype, url, settings)
            await self.test_connection(pid, info, secret)
        async with self.runtime.sessionmaker() as session, session.begin():
            await session.execute(
                update(db.providers)
                .where(db.providers.c.id == pid)
                .values(
                    url=url,
                    settings=settings,
                    tls=tls.public(),
                    generation=db.providers.c.generation + 1,
                    revision=db.revision_seq.next_value(),
                    updated_at=func.now(),
                )
            )
            if secret != old:
                await self.secrets.put(pid, secret, ptype.value)
        self.collectors.kick()  # the generation changed: the collector restarts with it
        async with self.runtime.sessionmaker() as session:
            return await providers.find(session, pid)

    async def reload(self, ref: str) -> str:
        """Have the provider reconnected and fully reloaded: a new generation restarts its
        collector in whichever replica holds it (the same path as a changed definition)."""
        async with self.runtime.sessionmaker() as session, session.begin():
            pid: str = (await providers.find(session, ref, lock=True))["id"]
            await session.execute(
                update(db.providers)
                .where(db.providers.c.id == pid)
                .values(generation=db.providers.c.generation + 1)
            )
        self.collectors.kick()
        return pid

    async def delete(self, ref: str) -> None:
        """Remove the provider, its inventory and its Secret; announce it as Deleting."""
        async with self.runtime.sessionmaker() as session, session.begin():
            row = await providers.find(session, ref, lock=True)
            pid = row["id"]
            revision = await session.scalar(select(db.revision_seq.next_value()))
            await self.runtime.outbox.add(
                session,
                catalog.PROVIDER_STATUS,
                ProviderStatusChanged(
                    provider_id=pid,
                    provider_type=ProviderType(row["type"]),
                    name=row["name"],
                    phase=ProviderPhase.DELETING,
                    revision=revision or 0,
                ),
                event_id=f"provider-{pid}-deleted",
            )
            await session.execute(delete(db.objects).where(db.objects.c.provider_id == pid))
            await session.execute(delete(db.providers).where(db.providers.c.id == pid))
        self.collectors.kick()
        await self._forget_secret(pid)

    async def sweep_orphans(self) -> int:
        """Secrets whose provider row is gone (a crash between the two writes)."""
        async with self.runtime.sessionmaker() as session:
            known = set((await session.scalars(select(db.providers.c.id))).all())
        orphans = (await self.secrets.list_ids()) - known
        for pid in orphans:
            await self._forget_secret(pid)
        return len(orphans)

    async def _name_free(self, session: Any, name: str) -> None:
        taken = await session.scalar(
            select(func.count()).select_from(db.providers).where(db.providers.c.name == name)
        )
        if taken:
            raise Conflict(["body", "name"], f"a provider named {name!r} exists")

    async def _forget_secret(self, pid: str) -> None:
        try:
            await self.secrets.delete(pid)
        except Exception as exc:
            # The orphan sweep at the next start removes it; nothing else reads it meanwhile.
            log.warning("could not delete the Secret of provider %s: %s; swept later", pid, exc)


def _settings(s: providers.ProviderSettings) -> dict[str, Any]:
    return s.model_dump(by_alias=True, exclude_none=True)


def _tls_of(secret: Mapping[str, str]) -> TlsSpec:
    return TlsSpec.model_validate(
        {
            "caCert": secret.get("cacert") or None,
            "fingerprint": secret.get("fingerprint") or None,
            "insecureSkipVerify": _stored_flag(secret),
        }
    )


def _stored_flag(secret: Mapping[str, str]) -> bool:
    """The stored Secret's ``insecureSkipVerify``, read as everywhere else; a value that is
    neither true nor false (the Secret edited by hand) is a 422, not a guess."""
    try:
        return parse_flag(secret.get(INSECURE_SKIP_VERIFY))
    except FlagError as exc:
        raise Invalid(
            [(["body", "tls", exc.field], "value_error", f"the provider's Secret: {exc.reason}")]
        ) from None


__all__ = ["Invalid", "Registry"]
