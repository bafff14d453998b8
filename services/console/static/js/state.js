// What pages share: provider names by id (every page shows names, never ids) and navigation.

import { get } from "./api.js";

export const names = {
  byId: new Map(),
  async load() {
    const { items } = await get("/api/v1/providers");
    this.byId = new Map(items.map((p) => [p.id, p]));
    return items;
  },
  of(id) { const p = this.byId.get(id); return p ? p.name : id; },
  list(types) { return [...this.byId.values()].filter((p) => !types || types.includes(p.type)); },
};

export function go(path) { location.hash = "#" + path; }

export const TYPE_NAMES = { ovirt: "oVirt", openstack: "OpenStack", kubevirt: "KubeVirt" };
