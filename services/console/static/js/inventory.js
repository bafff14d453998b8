// Inventory: a provider's objects (VMs first) with their concerns; search, filters and
// sorting run in the inventory service, one page of 100 at a time, so a provider of 10,000
// VMs costs the browser one page.

import { get, seg } from "./api.js";
import { h, replace, field, select, table, badge, errorBox, debounce, Cursor, pager } from "./ui.js";
import { names, TYPE_NAMES } from "./state.js";

const PAGE = 100;

export async function render(main, _params, query) {
  const providers = names.list();
  if (!providers.length) {
    replace(main, h("h1", {}, "Inventory"), h("p", {}, "No provider yet: ", h("a", { href: "#/providers" }, "add one"), "."));
    return;
  }
  const chosen = providers.find((p) => p.name === query.get("provider")) || providers.find((p) => p.type !== "kubevirt") || providers[0];
  const provider = select(providers.map((p) => [p.id, `${p.name} (${TYPE_NAMES[p.type] || p.type})`]), chosen.id, { name: "provider" });
  const collection = h("select", { name: "collection" });
  const search = h("input", { type: "search", name: "search", autocomplete: "off" });
  const status = h("input", { name: "status", size: 10, autocomplete: "off" });
  const concern = select([["", "any"], ["Critical", "Critical"], ["Warning", "Warning"], ["Information", "Information"]], "", { name: "concern" });
  const sort = select([["name", "name"], ["-concerns", "most concerns first"], ["status", "status"], ["-revision", "recently changed"]], "name", { name: "sort" });
  const results = h("div", { "aria-live": "polite", "aria-busy": "false" });
  const detail = h("div", {});
  const cursor = new Cursor();

  function collections() {
    const p = names.byId.get(provider.value);
    const offered = p.collections || ["vms"];
    replace(collection, offered.map((c) => h("option", { value: c, selected: c === (offered.includes("vms") ? "vms" : offered[0]) }, c)));
  }

  async function load() {
    results.setAttribute("aria-busy", "true");
    const isVm = collection.value === "vms";
    try {
      const page = await get(`/api/v1/providers/${seg(provider.value)}/${seg(collection.value)}`, {
        search: search.value, status: status.value, concern: isVm ? concern.value : "",
        sort: sort.value, limit: PAGE, cursor: cursor.cursor,
      });
      cursor.next = page.next;
      const columns = [
        { title: "Name", cell: (o) => o.name },
        { title: "Status", cell: (o) => o.status || "" },
      ];
      if (isVm) columns.push({ title: "Concerns", cell: (o) => o.concernCount ? h("span", {}, badge(o.concernLevel, "sev"), ` ${o.concernCount}`) : "none" });
      columns.push({ title: "Id", cell: (o) => h("code", {}, o.id) });
      columns.push({ title: "Details", cell: (o) => h("button", { type: "button", "aria-label": `Details of ${o.name}`, onclick: () => show(o) }, "Details") });
      const shown = { size: PAGE, count: page.items.length };
      replace(results,
        pager(cursor, shown, page.total, load, collection.value),
        table(`${collection.value} of ${names.of(provider.value)}`, columns, page.items),
        pager(cursor, shown, page.total, load, collection.value));
    } catch (e) {
      replace(results, errorBox(e));
    }
    results.setAttribute("aria-busy", "false");
  }

  async function show(o) {
    replace(detail, h("p", {}, "Loading…"));
    try {
      const full = await get(`/api/v1/providers/${seg(provider.value)}/${seg(collection.value)}/${o.id.split("/").map(seg).join("/")}`, { detail: 1 });
      replace(detail,
        h("h2", { tabindex: -1 }, `${full.name}`),
        full.concerns && full.concerns.length
          ? table("Concerns", [
            { title: "Category", cell: (c) => badge(c.category, "sev") },
            { title: "Concern", cell: (c) => c.label || c.id },
            { title: "What it means", cell: (c) => c.assessment || "" },
          ], full.concerns)
          : h("p", {}, "No concerns."),
        h("details", {}, h("summary", {}, "All collected fields"), h("pre", { class: "log" }, JSON.stringify(full.data, null, 2))),
      );
      detail.querySelector("h2").focus();
    } catch (e) {
      replace(detail, errorBox(e));
    }
  }

  const again = () => { cursor.reset(); load(); };
  provider.addEventListener("change", () => { collections(); again(); });
  collection.addEventListener("change", again);
  search.addEventListener("input", debounce(again, 300));
  status.addEventListener("input", debounce(again, 300));
  concern.addEventListener("change", again);
  sort.addEventListener("change", again);
  collections();
  replace(main,
    h("h1", {}, "Inventory"),
    h("form", { role: "search", class: "row", onsubmit: (ev) => { ev.preventDefault(); again(); } },
      field("Provider", provider), field("Collection", collection), field("Search names", search),
      field("Status", status), field("Concern (VMs)", concern), field("Sort by", sort)),
    results, detail,
  );
  await load();
}
