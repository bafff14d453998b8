"""Names for the ids an answer carries: a plan or a map names its providers (and a plan its
maps) by id, and a person reads names. Looked up once per command, only for what is shown
to people (JSON keeps the ids); a lookup that fails leaves the ids, never fails the command.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cli.client import Api, ApiError, Unreachable


@dataclass(frozen=True)
class Names:
    by_id: dict[str, str] = field(default_factory=dict)

    def of(self, ref: object) -> str:
        """The name of ``ref`` if known, else ``ref`` itself ("-" for nothing)."""
        if not ref:
            return "-"
        return self.by_id.get(str(ref), str(ref))


async def lookup(api: Api, *, maps: bool = False) -> Names:
    """Every provider's name (and with ``maps``, every map's) by id."""
    found: dict[str, str] = {}
    sources = [("inventory", "/api/v1/providers")]
    if maps:
        sources += [("planner", "/api/v1/networkmaps"), ("planner", "/api/v1/storagemaps")]
    for service, path in sources:
        try:
            items = (await api.get(service, path))["items"]
        except (ApiError, Unreachable, KeyError, TypeError):
            continue
        found.update({str(i["id"]): str(i["name"]) for i in items if "id" in i and "name" in i})
    return Names(found)
