// Network and storage maps: the list, and an editor whose choices come from the inventory:
// the source's networks or storage on the left, the target cluster's network attachment
// definitions or storage classes on the right.

import { get, post, patch, del, seg, all } from "./api.js";
import { h, replace, field, select, table, errorBox, announce } from "./ui.js";
import { names, go } from "./state.js";

export async function render(main) {
  const [network, storage] = await Promise.all([get("/api/v1/networkmaps"), get("/api/v1/storagemaps")]);
  const cols = (kind) => [
    { title: "Name", cell: (m) => h("a", { href: `#/maps/${kind}/${seg(m.name)}` }, m.name) },
    { title: "Source", cell: (m) => names.of(m.sourceProvider) },
    { title: "Target", cell: (m) => names.of(m.targetProvider) },
    { title: "Entries", cell: (m) => m.entries.map((e) => `${e.source.name || e.source.id || e.source.type} → ${dest(kind, e.destination)}`).join("; ") },
    { title: "Problems", cell: (m) => m.problems.length ? m.problems.map((p) => p.message).join("; ") : "none" },
  ];
  replace(main,
    h("h1", {}, "Maps"),
    h("h2", {}, "Network maps"),
    h("p", {}, h("a", { href: "#/maps/network/new" }, "New network map")),
    table("Network maps", cols("network"), network.items),
    h("h2", {}, "Storage maps"),
    h("p", {}, h("a", { href: "#/maps/storage/new" }, "New storage map")),
    table("Storage maps", cols("storage"), storage.items),
  );
}

function dest(kind, d) {
  if (kind === "storage") return [d.storageClass, d.volumeMode, d.accessMode].filter(Boolean).join(" ");
  return d.type === "multus" ? `multus ${d.namespace ? d.namespace + "/" : ""}${d.name}` : d.type;
}

// The objects of a provider's collection to choose from; none if its type has no such
// collection (the API answers 404 for it) or the provider is not chosen yet.
async function choices(providerId, collection) {
  if (!providerId) return [];
  try {
    return await all(`/api/v1/providers/${seg(providerId)}/${collection}`, {}, 5000);
  } catch (e) {
    if (e.status === 404) return [];
    throw e;
  }
}

export async function renderEdit(main, [kind, ref]) {
  const existing = ref ? await get(`/api/v1/${kind}maps/${seg(ref)}`) : null;
  const title = existing ? `${kind === "network" ? "Network" : "Storage"} map ${existing.name}` : `New ${kind} map`;
  const sources = names.list(["ovirt", "openstack"]);
  const targets = names.list(["kubevirt"]);
  const name = h("input", { name: "name", required: true, value: existing ? existing.name : "", disabled: !!existing, autocomplete: "off" });
  const description = h("input", { name: "description", value: existing ? existing.description : "", size: 50 });
  const source = select([["", "choose…"], ...sources.map((p) => [p.id, p.name])], existing ? existing.sourceProvider : "", { name: "sourceProvider", required: true, disabled: !!existing });
  const target = select([["", "choose…"], ...targets.map((p) => [p.id, p.name])], existing ? existing.targetProvider : (targets[0] || {}).id, { name: "targetProvider", required: true, disabled: !!existing });
  const rows = h("tbody", {});
  const problems = h("div", { "aria-live": "polite" });
  let left = [], right = [];

  async function loadChoices() {
    if (kind === "network") {
      [left, right] = await Promise.all([choices(source.value, "networks"), choices(target.value, "networkattachmentdefinitions")]);
    } else {
      const sp = names.byId.get(source.value);
      const src = sp && sp.type === "openstack" ? "volumetypes" : "storagedomains";
      [left, right] = await Promise.all([choices(source.value, src), choices(target.value, "storageclasses")]);
      if (sp && sp.type === "openstack") left = [{ id: "glance", name: "glance (image-backed root disks)", glance: true }, ...left];
    }
  }

  function entryRow(entry) {
    const srcValue = entry ? (entry.source.type === "glance" ? "glance" : entry.source.id || entry.source.name) : "";
    const known = left.some((o) => o.id === srcValue || o.name === srcValue);
    const src = select([["", "choose…"], ...(known || !srcValue ? [] : [[srcValue, srcValue]]), ...left.map((o) => [o.glance ? "glance" : o.name, o.name])],
      left.find((o) => o.id === srcValue) ? left.find((o) => o.id === srcValue).name : srcValue, { "aria-label": "Source", "data-role": "source" });
    const tr = h("tr", {});
    let cells;
    if (kind === "network") {
      const d = entry ? entry.destination : { type: "pod" };
      const type = select([["pod", "pod network"], ["multus", "Multus network"], ["ignored", "ignored (NIC left out)"]], d.type, { "aria-label": "Destination type", "data-role": "type" });
      const nadValue = d.type === "multus" ? `${d.namespace ? d.namespace + "/" : ""}${d.name}` : "";
      const nad = select([["", "choose…"], ...right.map((o) => [o.id, o.id])], nadValue, { "aria-label": "Network attachment definition", "data-role": "nad" });
      const sync = () => { nad.disabled = type.value !== "multus"; };
      type.addEventListener("change", sync); sync();
      cells = [src, type, nad];
    } else {
      const d = entry ? entry.destination : {};
      const sc = select([["", "choose…"], ...right.map((o) => [o.name, o.name])], d.storageClass || "", { "aria-label": "Storage class", "data-role": "class" });
      const mode = select([["", "the class's default"], ["Filesystem", "Filesystem"], ["Block", "Block"]], d.volumeMode || "", { "aria-label": "Volume mode", "data-role": "mode" });
      const access = select([["", "the class's default"], ["ReadWriteOnce", "ReadWriteOnce"], ["ReadWriteMany", "ReadWriteMany"], ["ReadWriteOncePod", "ReadWriteOncePod"], ["ReadOnlyMany", "ReadOnlyMany"]], d.accessMode || "", { "aria-label": "Access mode", "data-role": "access" });
      cells = [src, sc, mode, access];
    }
    replace(tr, cells.map((c) => h("td", {}, c)), h("td", {}, h("button", { type: "button", onclick: () => { tr.remove(); announce("Entry removed"); } }, "Remove entry")));
    return tr;
  }

  function entries() {
    return [...rows.children].map((tr) => {
      const v = (role) => tr.querySelector(`[data-role=${role}]`).value;
      const s = v("source");
      const sourceRef = s === "glance" ? { type: "glance" } : { name: s };
      if (kind === "network") {
        const t = v("type");
        const destination = { type: t };
        if (t === "multus") { const [ns, n] = v("nad").split("/"); destination.namespace = ns; destination.name = n; }
        return { source: sourceRef, destination };
      }
      const destination = { storageClass: v("class") };
      if (v("mode")) destination.volumeMode = v("mode");
      if (v("access")) destination.accessMode = v("access");
      return { source: sourceRef, destination };
    });
  }

  // ``keep`` is read once the choices are in, so what the user picked meanwhile stays.
  async function redraw(keep) {
    await loadChoices();
    replace(rows, keep().map(entryRow));
    if (!rows.children.length) rows.append(entryRow(null));
  }
  source.addEventListener("change", () => redraw(() => []));
  target.addEventListener("change", () => redraw(entries));

  const heads = kind === "network" ? ["Source network", "Destination", "Network attachment definition", ""] : ["Source storage", "Storage class", "Volume mode", "Access mode", ""];
  const form = h("form", {
    onsubmit: async (ev) => {
      ev.preventDefault();
      try {
        let saved;
        if (existing) saved = await patch(`/api/v1/${kind}maps/${seg(existing.id)}`, { description: description.value, entries: entries() }, `"${existing.revision}"`);
        else saved = await post(`/api/v1/${kind}maps`, { name: name.value, description: description.value, sourceProvider: source.value, targetProvider: target.value, entries: entries() });
        announce(`Map ${saved.name} saved`);
        if (saved.problems.length) replace(problems, h("div", { class: "error", role: "alert" }, "Saved, with problems:\n" + saved.problems.map((p) => p.message).join("\n")));
        else go("/maps");
      } catch (e) { replace(problems, errorBox(e)); }
    },
  },
    h("div", { class: "row" }, field("Name", name), field("Source provider", source), field("Target provider", target)),
    field("Description", description),
    h("table", {}, h("caption", {}, "Entries: each source on the left goes to the target's choice on the right"),
      h("thead", {}, h("tr", {}, heads.map((t) => h("th", { scope: "col" }, t)))), rows),
    h("div", { class: "toolbar" },
      h("button", { type: "button", onclick: () => { rows.append(entryRow(null)); rows.lastChild.querySelector("select").focus(); } }, "Add entry"),
      h("button", { type: "submit", class: "primary" }, "Save map"),
      existing ? h("button", { type: "button", class: "danger", onclick: async () => {
        if (!confirm(`Delete map ${existing.name}?`)) return;
        try { await del(`/api/v1/${kind}maps/${seg(existing.id)}`); go("/maps"); } catch (e) { replace(problems, errorBox(e)); }
      } }, "Delete map") : ""),
    problems,
  );
  replace(main, h("h1", {}, title),
    existing && existing.problems.length ? h("div", { class: "error" }, existing.problems.map((p) => p.message).join("\n")) : "",
    form);
  await redraw(() => (existing ? existing.entries : []));
}
