// Events: what happens, as it happens: provider status and inventory changes (the
// inventory's stream) and plan, migration and VM changes (the planner's), newest first.
// Only the newest entries are kept and drawn, so a busy hour never slows the page.

import { get, stream } from "./api.js";
import { h, replace, field, select, badge, debounce } from "./ui.js";
import { names } from "./state.js";

const KEEP = 500;

export async function render(main) {
  const events = [];
  const body = h("tbody", {});
  const filter = h("input", { type: "search", name: "filter", autocomplete: "off" });
  const source = select([["", "every source"], ["inventory", "inventory"], ["planner", "plans"]], "", { name: "source" });
  const paused = h("input", { type: "checkbox", id: "pause-events" });
  const state = h("span", { class: "note", role: "status" });
  const count = h("p", { class: "note" });

  function matches(e) {
    if (source.value && e.source !== source.value) return false;
    const q = filter.value.trim().toLowerCase();
    return !q || e.text.toLowerCase().includes(q) || e.kind.toLowerCase().includes(q);
  }
  function draw() {
    const shown = events.filter(matches).slice(0, 200);
    replace(body, shown.map((e) => h("tr", {}, h("td", {}, e.at.toLocaleTimeString()), h("td", {}, e.source), h("td", {}, e.kind), h("td", {}, e.phase ? badge(e.phase) : ""), h("td", {}, e.text))));
    count.textContent = `${shown.length} shown of the last ${events.length} events`;
  }
  const redraw = debounce(draw, 200);
  function add(e) {
    events.unshift({ at: new Date(), ...e });
    if (events.length > KEEP) events.length = KEEP;
    if (!paused.checked) redraw();
  }
  const inv = stream("/api/v1/inventory/events", {}, (type, d) => {
    if (type === "provider") {
      const failed = ((d.status || {}).conditions || []).filter((c) => c.status === "False").map((c) => c.message || c.reason).join("; ");
      add({ source: "inventory", kind: "provider", phase: (d.status || {}).phase, text: `provider ${d.name}${failed ? `: ${failed}` : ""}` });
    }
    else add({ source: "inventory", kind: `${d.kind} ${d.action}`, text: `${names.of(d.providerId)}: ${d.name || d.id || ""}` });
  }, (s) => { state.textContent = s === "open" ? "Live" : "Reconnecting…"; });
  // Plan names by id: migration and VM frames name their plan by id only.
  const planNames = new Map();
  get("/api/v1/plans", { limit: 1000 }).then((page) => page.items.forEach((p) => planNames.set(p.id, p.name))).catch(() => {});
  const planOf = (id) => planNames.get(id) || id;
  const plans = stream("/api/v1/planner/events", {}, (type, d) => {
    if (type === "plan") { planNames.set(d.id, d.name); add({ source: "planner", kind: "plan", phase: d.phase, text: `plan ${d.name}` }); }
    else if (type === "migration") add({ source: "planner", kind: "migration", phase: d.phase, text: `migration #${d.number} of plan ${planOf(d.planId)}: ${d.vms.succeeded}/${d.vms.total} succeeded, ${d.vms.failed} failed` });
    else if (type === "vm") add({ source: "planner", kind: "vm", phase: d.phase, text: `VM ${d.name} of plan ${planOf(d.planId)}${d.step ? `, ${d.step}` : ""}${d.error ? `: ${d.error.reason}: ${d.error.message}` : ""}` });
  });
  filter.addEventListener("input", redraw);
  source.addEventListener("change", draw);
  paused.addEventListener("change", () => { if (!paused.checked) draw(); });
  replace(main, h("h1", {}, "Events"),
    h("div", { class: "row" }, field("Filter", filter), field("Source", source),
      h("div", { class: "field inline" }, paused, h("label", { for: "pause-events" }, "Pause")), state),
    count,
    h("table", { class: "events" }, h("caption", {}, "Newest first (since this page was opened)"),
      h("thead", {}, h("tr", {}, ["Time", "Source", "What", "Phase", "Detail"].map((t) => h("th", { scope: "col" }, t)))), body));
  draw();
  return () => { inv(); plans(); };
}
