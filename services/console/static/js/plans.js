// Plans: the list (with each plan's current migration), and the wizard that makes one:
// source and target, namespace, VMs (by filter, or picked by hand from the inventory),
// maps, limits, and cold or warm with a cutover.

import { get, post, seg, all } from "./api.js";
import { h, replace, field, select, table, badge, meter, errorBox, announce, debounce, Cursor, pager } from "./ui.js";
import { names, go } from "./state.js";

export async function render(main, _params, query) {
  const archived = h("input", { type: "checkbox", name: "archived", checked: query.get("archived") === "1" });
  const list = h("div", { "aria-live": "polite" });
  const cursor = new Cursor();
  async function load() {
    try {
      const page = await get("/api/v1/plans", { archived: archived.checked, limit: 100, cursor: cursor.cursor });
      cursor.next = page.next;
      replace(list, table(archived.checked ? "Archived plans" : "Plans", [
        { title: "Name", cell: (p) => h("a", { href: `#/plans/${seg(p.name)}` }, p.name) },
        { title: "Source → target", cell: (p) => `${names.of(p.sourceProvider)} → ${names.of(p.targetProvider)} / ${p.targetNamespace}` },
        { title: "Type", cell: (p) => p.migrationType },
        { title: "Phase", cell: (p) => badge(p.phase) },
        { title: "VMs", cell: (p) => vmCounts(p) },
        { title: "Copied", cell: (p) => p.migration ? meter(p.migration.progress.completed, p.migration.progress.total, `Plan ${p.name}`) : "" },
        { title: "Problems", cell: (p) => p.problems.length ? `${p.problems.filter((x) => x.severity === "error").length} errors, ${p.problems.filter((x) => x.severity === "warning").length} warnings` : "none" },
      ], page.items), pager(cursor, { size: 100, count: page.items.length }, null, load, "plans"));
    } catch (e) { replace(list, errorBox(e)); }
  }
  archived.addEventListener("change", () => { cursor.reset(); load(); });
  replace(main, h("h1", {}, "Plans"),
    h("div", { class: "toolbar" }, h("a", { href: "#/plans/new" }, "New plan"),
      h("div", { class: "field inline" }, archived, h("label", { for: archived.id = "show-archived" }, "Show archived plans"))),
    list);
  await load();
}

function vmCounts(p) {
  const m = p.migration;
  if (!m) return `${"vmCount" in p ? p.vmCount : p.vms.length}`;
  const v = m.vms;
  return [`${v.total} in run #${m.number}`, v.succeeded && `${v.succeeded} succeeded`, v.failed && `${v.failed} failed`,
    v.running && `${v.running} running`, v.canceled && `${v.canceled} canceled`].filter(Boolean).join(", ");
}

const STEPS = ["Source and target", "Virtual machines", "Maps", "Options", "Review"];

export async function renderWizard(main) {
  const sources = names.list(["ovirt", "openstack"]);
  const targets = names.list(["kubevirt"]);
  const s = {
    step: 0, name: "", source: (sources[0] || {}).id || "", target: (targets[0] || {}).id || "", namespace: "",
    mode: "hand", picked: new Map(), filter: { search: "", names: "", excludeConcerns: "" },
    networkMap: "", storageMap: "", migrationType: "cold", cutover: "", power: "auto",
    limits: { maxVmsInFlight: "", maxDisksInFlight: "", maxDisksInFlightPerSource: "" }, convertGuest: false,
  };
  const body = h("div", {});
  const problems = h("div", { "aria-live": "polite" });
  const steps = h("ol", { class: "steps", "aria-label": "Steps" });
  replace(main, h("h1", {}, "New plan"), steps, body, problems);

  async function show() {
    replace(steps, STEPS.map((t, i) => h("li", { "aria-current": i === s.step ? "step" : null }, `${i + 1}. ${t}`)));
    replace(problems);
    const content = await [stepProviders, stepVms, stepMaps, stepOptions, stepReview][s.step]();
    const nav = h("div", { class: "toolbar" },
      s.step > 0 ? h("button", { type: "button", onclick: () => { s.step--; show(); } }, "Back") : "",
      s.step < STEPS.length - 1 ? h("button", { type: "submit", class: "primary" }, "Next") : h("button", { type: "submit", class: "primary" }, "Create plan"));
    const form = h("form", { onsubmit: async (ev) => {
      ev.preventDefault();
      const why = content.check ? content.check() : "";
      if (why) { replace(problems, errorBox(why)); return; }
      if (s.step < STEPS.length - 1) { s.step++; await show(); } else await create();
    } }, h("fieldset", {}, h("legend", {}, `Step ${s.step + 1} of ${STEPS.length}: ${STEPS[s.step]}`), content.node), nav);
    replace(body, form);
    const first = form.querySelector("input, select, textarea");
    if (first) first.focus();
  }

  async function stepProviders() {
    const name = h("input", { name: "name", required: true, pattern: "[a-z0-9]([-a-z0-9]*[a-z0-9])?", value: s.name, autocomplete: "off" });
    const source = select(sources.map((p) => [p.id, p.name]), s.source, { name: "source" });
    const target = select(targets.map((p) => [p.id, p.name]), s.target, { name: "target" });
    const namespace = h("input", { name: "namespace", required: true, value: s.namespace, list: "namespaces", autocomplete: "off" });
    const options = h("datalist", { id: "namespaces" });
    const fill = async () => {
      try {
        const ns = await all(`/api/v1/providers/${seg(target.value)}/namespaces`, {}, 2000);
        replace(options, ns.map((n) => h("option", { value: n.name })));
      } catch { replace(options); }
    };
    target.addEventListener("change", fill);
    await fill();
    const read = () => { s.name = name.value; s.source = source.value; s.target = target.value; s.namespace = namespace.value; };
    for (const el of [name, source, target, namespace]) el.addEventListener("change", read);
    return {
      node: [field("Plan name", name, "A DNS label: lower-case letters, digits and dashes."), field("Source provider", source),
        field("Target provider", target), field("Target namespace", namespace, "Namespaces of the target are suggested."), options],
      check: () => { read(); if (!s.source || !s.target) return "Add a source and a target provider first."; return ""; },
    };
  }

  async function stepVms() {
    const byHand = h("input", { type: "radio", name: "mode", value: "hand", checked: s.mode === "hand", id: "mode-hand" });
    const byFilter = h("input", { type: "radio", name: "mode", value: "filter", checked: s.mode === "filter", id: "mode-filter" });
    const area = h("div", {});
    const count = h("p", { "aria-live": "polite" });
    const updateCount = () => { count.textContent = s.mode === "hand" ? `${s.picked.size} VMs picked` : "VMs matching the filter when the plan is created"; };
    async function draw() {
      s.mode = byHand.checked ? "hand" : "filter";
      updateCount();
      if (s.mode === "filter") {
        const search = h("input", { name: "filter-search", value: s.filter.search, autocomplete: "off" });
        const patterns = h("input", { name: "filter-names", value: s.filter.names, size: 40, autocomplete: "off" });
        const exclude = select([["", "none"], ["Critical", "with a Critical concern"], ["Warning", "with a Warning or Critical concern"]], s.filter.excludeConcerns, { name: "exclude" });
        const read = () => { s.filter = { search: search.value, names: patterns.value, excludeConcerns: exclude.value }; };
        for (const el of [search, patterns, exclude]) el.addEventListener("change", read);
        replace(area, field("Name contains", search), field("Name patterns", patterns, "Shell patterns, separated by spaces: web-* db-?"), field("Leave out VMs", exclude));
        return;
      }
      const q = h("input", { type: "search", name: "vm-search", autocomplete: "off" });
      const list = h("div", {});
      const cursor = new Cursor();
      async function load() {
        const page = await get(`/api/v1/providers/${seg(s.source)}/vms`, { search: q.value, limit: 50, cursor: cursor.cursor });
        cursor.next = page.next;
        replace(list, table("Source VMs", [
          { title: "Pick", cell: (vm) => {
            const box = h("input", { type: "checkbox", checked: s.picked.has(vm.id), "aria-label": `Pick ${vm.name}` });
            box.addEventListener("change", () => { if (box.checked) s.picked.set(vm.id, vm.name); else s.picked.delete(vm.id); updateCount(); });
            return box;
          } },
          { title: "Name", cell: (vm) => vm.name },
          { title: "Status", cell: (vm) => vm.status },
          { title: "Concerns", cell: (vm) => vm.concernCount ? h("span", {}, badge(vm.concernLevel, "sev"), ` ${vm.concernCount}`) : "none" },
        ], page.items), pager(cursor, { size: 50, count: page.items.length }, page.total, load, "VMs"),
        h("div", { class: "toolbar" }, h("button", { type: "button", onclick: () => { page.items.forEach((vm) => s.picked.set(vm.id, vm.name)); updateCount(); load(); } }, "Pick every VM on this page")));
      }
      q.addEventListener("input", debounce(() => { cursor.reset(); load(); }, 300));
      replace(area, field("Search source VMs", q), list);
      await load();
    }
    byHand.addEventListener("change", draw);
    byFilter.addEventListener("change", draw);
    await draw();
    return {
      node: [h("div", { role: "radiogroup", "aria-label": "How to choose the VMs", class: "toolbar" },
        byHand, h("label", { for: "mode-hand" }, "Pick by hand"), byFilter, h("label", { for: "mode-filter" }, "By filter")), count, area],
      check: () => (s.mode === "hand" && !s.picked.size ? "Pick at least one VM." : ""),
    };
  }

  async function stepMaps() {
    const [nm, sm] = await Promise.all([get("/api/v1/networkmaps", { provider: s.source }), get("/api/v1/storagemaps", { provider: s.source })]);
    const fits = (m) => m.sourceProvider === s.source && m.targetProvider === s.target;
    const nets = nm.items.filter(fits), stores = sm.items.filter(fits);
    s.networkMap = s.networkMap || (nets[0] || {}).id || "";
    s.storageMap = s.storageMap || (stores[0] || {}).id || "";
    const network = select([["", "choose…"], ...nets.map((m) => [m.id, m.name])], s.networkMap, { name: "networkMap", required: true });
    const storage = select([["", "choose…"], ...stores.map((m) => [m.id, m.name])], s.storageMap, { name: "storageMap", required: true });
    const read = () => { s.networkMap = network.value; s.storageMap = storage.value; };
    network.addEventListener("change", read); storage.addEventListener("change", read);
    return {
      node: [field("Network map", network), field("Storage map", storage),
        h("p", { class: "note" }, "Maps from ", names.of(s.source), " to ", names.of(s.target), ". ", h("a", { href: "#/maps" }, "Manage maps"), " (leaves the wizard).")],
      check: () => { read(); return s.networkMap && s.storageMap ? "" : "Choose both maps."; },
    };
  }

  async function stepOptions() {
    const type = select([["cold", "Cold: power off, then copy"], ["warm", "Warm: copy while running, then a short cutover"]], s.migrationType, { name: "migrationType" });
    const cutover = h("input", { type: "datetime-local", name: "cutover", value: s.cutover });
    const power = select([["auto", "as the source was"], ["on", "on"], ["off", "off"]], s.power, { name: "targetPowerState" });
    const limit = (k) => h("input", { type: "number", min: 1, max: 10000, name: k, value: s.limits[k], size: 6 });
    const lim = { maxVmsInFlight: limit("maxVmsInFlight"), maxDisksInFlight: limit("maxDisksInFlight"), maxDisksInFlightPerSource: limit("maxDisksInFlightPerSource") };
    const convert = h("input", { type: "checkbox", name: "convertGuest", checked: s.convertGuest, id: "convert-guest" });
    const read = () => {
      s.migrationType = type.value; s.cutover = cutover.value; s.power = power.value; s.convertGuest = convert.checked;
      for (const k of Object.keys(lim)) s.limits[k] = lim[k].value;
    };
    for (const el of [type, cutover, power, convert, ...Object.values(lim)]) el.addEventListener("change", read);
    return {
      node: [field("Migration type", type), field("Cutover (optional)", cutover, "No source VM is powered off before this time (your time zone); empty: at once."),
        field("Target power state", power),
        h("div", { class: "row" }, field("VMs in flight", lim.maxVmsInFlight), field("Disks in flight", lim.maxDisksInFlight), field("Disks in flight per source", lim.maxDisksInFlightPerSource)),
        h("p", { class: "note" }, "Empty limits take the service's defaults."),
        h("div", { class: "field inline" }, convert, h("label", { for: "convert-guest" }, "Convert each guest (virt-v2v-in-place)"))],
      check: () => { read(); return ""; },
    };
  }

  function planBody() {
    const b = { name: s.name, sourceProvider: s.source, targetProvider: s.target, targetNamespace: s.namespace,
      networkMap: s.networkMap, storageMap: s.storageMap, migrationType: s.migrationType, targetPowerState: s.power, convertGuest: s.convertGuest };
    if (s.mode === "hand") b.vms = [...s.picked.keys()].map((id) => ({ id }));
    else {
      const f = {};
      if (s.filter.search) f.search = s.filter.search;
      if (s.filter.names.trim()) f.names = s.filter.names.trim().split(/\s+/);
      if (s.filter.excludeConcerns) f.excludeConcerns = s.filter.excludeConcerns;
      b.vmSelector = f;
    }
    const limits = {};
    for (const [k, v] of Object.entries(s.limits)) if (v) limits[k] = Number(v);
    if (Object.keys(limits).length) b.limits = limits;
    if (s.cutover) b.cutover = new Date(s.cutover).toISOString();
    return b;
  }

  async function stepReview() {
    const b = planBody();
    const vms = b.vms ? `${b.vms.length} picked: ${[...s.picked.values()].slice(0, 20).join(", ")}${s.picked.size > 20 ? "…" : ""}` : `by filter ${JSON.stringify(b.vmSelector)}`;
    return { node: h("dl", { class: "facts" },
      h("dt", {}, "Name"), h("dd", {}, b.name),
      h("dt", {}, "From"), h("dd", {}, names.of(b.sourceProvider)),
      h("dt", {}, "To"), h("dd", {}, `${names.of(b.targetProvider)}, namespace ${b.targetNamespace}`),
      h("dt", {}, "VMs"), h("dd", {}, vms),
      h("dt", {}, "Type"), h("dd", {}, b.migrationType + (b.cutover ? `, cutover ${new Date(b.cutover).toLocaleString()}` : "")),
      h("dt", {}, "Limits"), h("dd", {}, b.limits ? JSON.stringify(b.limits) : "defaults")) };
  }

  async function create() {
    try {
      const made = await post("/api/v1/plans", planBody());
      announce(`Plan ${made.name} created: ${made.phase}`);
      go(`/plans/${encodeURIComponent(made.name)}`);
    } catch (e) { replace(problems, errorBox(e)); }
  }
  await show();
}
