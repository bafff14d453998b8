// A plan's page: its definition and problems; start, cancel, re-run, archive; the current
// migration's VMs (a page at a time, kept live by the planner's event stream), and for the
// VM chosen its steps and disks (bytes, rate, ETA live from the progress stream) and, when it
// failed, its error and the populator's last log lines (kept by the orchestrator).

import { get, post, put, seg, stream } from "./api.js";
import { h, replace, select, table, badge, meter, rate, duration, bytes, when, errorBox, announce, Cursor, pager } from "./ui.js";
import { names } from "./state.js";

const PAGE = 100;
const FINAL = ["Succeeded", "Failed", "Canceled"];
const LOG_LINES = 40;

export async function render(main, [ref]) {
  let plan = await get(`/api/v1/plans/${seg(ref)}`);
  const head = h("div", {});
  const summary = h("section", { "aria-labelledby": "migration-h" });
  const vmsBox = h("div", {});
  const detail = h("section", { "aria-live": "off" });
  const live = h("span", { class: "note", role: "status" }, "");
  const phase = select([["", "every phase"], ...["Pending", "Running", "Succeeded", "Failed", "Canceled", "Skipped"].map((p) => [p, p])], "", { name: "vm-phase", id: "vm-phase" });
  const cursor = new Cursor();
  const rows = new Map();
  // The newest frame of every VM of the plan (the stream replays them all once): a page
  // drawn later starts from them. One small object per VM, even at 20,000.
  const latest = new Map();
  let chosen = null;
  const mapNames = {};

  async function mapName(kind, id) {
    if (!mapNames[id]) {
      try { mapNames[id] = (await get(`/api/v1/${kind}maps/${seg(id)}`)).name; } catch { mapNames[id] = id; }
    }
    return mapNames[id];
  }

  async function drawHead() {
    const running = plan.phase === "Running";
    const ran = plan.status && plan.status.migration;
    const act = (label, fn, cls) => h("button", { type: "button", class: cls, onclick: async (ev) => {
      ev.target.disabled = true;
      try { await fn(); } catch (e) { replace(messages, errorBox(e)); }
      ev.target.disabled = false;
    } }, label);
    const messages = h("div", { "aria-live": "polite" });
    const buttons = [act("Validate", async () => { await post(`/api/v1/plans/${seg(plan.id)}/validate`); await refresh(); announce("Validated"); })];
    if (!running && !plan.archived) {
      buttons.push(act(ran ? "Run again" : "Start", async () => {
        const started = await post(`/api/v1/plans/${seg(plan.id)}/start`);
        announce(`Migration #${started.migration.number} started: ${started.migration.vms} VMs`);
        cursor.reset(); chosen = null; replace(detail);
        await refresh(); await loadVms();
      }, "primary"));
    }
    if (running) {
      buttons.push(act("Cancel", async () => {
        if (!confirm(`Cancel the running migration of ${plan.name}? Its VMs stop and what they made is removed.`)) return;
        await post(`/api/v1/plans/${seg(plan.id)}/cancel`, {});
        announce("Cancel requested");
      }, "danger"));
      if (plan.migrationType === "warm") buttons.push(act("Cut over now", async () => { await put(`/api/v1/plans/${seg(plan.id)}/cutover`, { at: "now" }); await refresh(); announce("Cutover set to now"); }));
    }
    if (!running) {
      buttons.push(act(plan.archived ? "Unarchive" : "Archive", async () => {
        await post(`/api/v1/plans/${seg(plan.id)}/${plan.archived ? "unarchive" : "archive"}`);
        await refresh(); announce(plan.archived ? "Archived" : "Unarchived");
      }));
    }
    const errors = plan.problems.filter((p) => p.severity === "error");
    replace(head,
      h("h1", {}, `Plan ${plan.name} `, badge(plan.phase), plan.archived ? " (archived)" : ""),
      h("dl", { class: "facts" },
        h("dt", {}, "From"), h("dd", {}, names.of(plan.sourceProvider)),
        h("dt", {}, "To"), h("dd", {}, `${names.of(plan.targetProvider)}, namespace ${plan.targetNamespace}`),
        h("dt", {}, "Maps"), h("dd", {}, `network ${await mapName("network", plan.networkMap)}, storage ${await mapName("storage", plan.storageMap)}`),
        h("dt", {}, "Type"), h("dd", {}, plan.migrationType + (plan.cutover ? `, cutover ${when(plan.cutover)}` : "")),
        h("dt", {}, "VMs"), h("dd", {}, String("vmCount" in plan ? plan.vmCount : plan.vms.length)),
        h("dt", {}, "Limits"), h("dd", {}, `${plan.limits.maxVmsInFlight} VMs, ${plan.limits.maxDisksInFlight} disks in flight (${plan.limits.maxDisksInFlightPerSource} per source)`)),
      h("div", { class: "toolbar", role: "group", "aria-label": "Plan actions" }, buttons, live),
      messages,
      h("h2", {}, "Problems"),
      plan.problems.length
        ? table(`${errors.length} errors (a start is refused while there are any), ${plan.problems.length - errors.length} warnings`, [
          { title: "Severity", cell: (p) => badge(p.severity, "sev") },
          { title: "VM", cell: (p) => p.vm || "" },
          { title: "Where", cell: (p) => p.path },
          { title: "Problem", cell: (p) => p.message },
        ], plan.problems)
        : h("p", {}, "None: the plan can start."),
    );
    drawSummary();
  }

  function drawSummary() {
    const m = plan.status && plan.status.migration;
    if (!m) { replace(summary, h("h2", { id: "migration-h" }, "Migration"), h("p", {}, "Not started yet.")); return; }
    const v = m.vms;
    replace(summary,
      h("h2", { id: "migration-h" }, `Migration #${m.number} `, badge(m.phase)),
      h("p", {}, meter(m.progress.completed, m.progress.total, "Bytes copied")),
      h("p", {}, `${v.total} VMs: ${v.pending} pending, ${v.running} running, ${v.succeeded} succeeded, ${v.failed} failed, ${v.canceled} canceled, ${v.skipped} skipped.`,
        m.startedAt ? ` Started ${when(m.startedAt)}` : "", m.completedAt ? `, ended ${when(m.completedAt)}.` : "."),
    );
  }

  // A VM's row. Its button stays the same element while the stream updates the other
  // cells, so a click (or keyboard focus) on it is never lost to a redraw.
  function vmRow(vm) {
    const button = h("button", { type: "button", "aria-label": `Show VM ${vm.name}`, onclick: () => choose(rows.get(vm.id).vm) }, vm.name);
    const tr = h("tr", { "data-vm": vm.id }, h("td", {}, button));
    fillRow(tr, vm);
    return tr;
  }

  function fillRow(tr, vm) {
    const err = vm.error ? `${vm.error.reason}: ${vm.error.message}` : vm.waiting ? vm.waiting.note : "";
    while (tr.children.length > 1) tr.lastChild.remove();
    tr.append(
      h("td", {}, badge(vm.phase)),
      h("td", {}, vm.step || ""),
      h("td", {}, meter(vm.progress.completed, vm.progress.total, `${vm.name} copied`)),
      h("td", { class: "num" }, rate(vm.rateBytesPerSecond)),
      h("td", { class: "num" }, vm.phase === "Running" ? duration(vm.etaSeconds) : ""),
      h("td", {}, err),
    );
  }

  async function loadVms() {
    try {
      const page = await get(`/api/v1/plans/${seg(plan.id)}/vms`, { phase: phase.value, limit: PAGE, cursor: cursor.cursor });
      cursor.next = page.next;
      rows.clear();
      const body = h("tbody", {}, page.items.map((item) => {
        // The stream may have told of a VM before (or after) this page was read: the newer wins.
        const seen = latest.get(item.id);
        const vm = seen && seen.migrationId === item.migrationId && seen.revision > item.revision ? seen : item;
        rows.set(vm.id, { tr: null, vm });
        const tr = vmRow(vm); rows.get(vm.id).tr = tr; return tr;
      }));
      const shown = { size: PAGE, count: page.items.length };
      replace(vmsBox,
        page.migrationId ? "" : h("p", {}, "The plan has not run yet."),
        h("table", {}, h("caption", {}, "VMs of the current migration"),
          h("thead", {}, h("tr", {}, ["VM", "Phase", "Step", "Copied", "Rate", "ETA", "Error or wait"].map((t) => h("th", { scope: "col" }, t)))), body),
        pager(cursor, shown, page.total, loadVms, "VMs"));
    } catch (e) { replace(vmsBox, errorBox(e)); }
  }

  // --- one VM: steps, disks (live), failure logs ----------------------------------------
  let stopProgress = null;
  const disks = new Map();
  async function choose(vm) {
    chosen = vm;
    if (stopProgress) stopProgress();
    disks.clear();
    await drawVm(true);
    stopProgress = stream("/api/v1/progress/events", { vm: vm.id }, (type, d) => {
      if (type !== "disk") return;
      const disk = disks.get(d.diskId);
      if (disk) replace(disk.tr, diskCells(disk.name, d.bytesDone, d.bytesTotal, d.rateBytesPerSecond, d.etaSeconds), disk.state);
    });
  }

  function diskCells(name, done, total, r, eta) {
    return [h("td", {}, name), h("td", {}, meter(done, total, `Disk ${name}`)), h("td", { class: "num" }, rate(r)), h("td", { class: "num" }, duration(eta))];
  }

  async function drawVm(focus) {
    const vm = chosen;
    let view;
    try { view = await get(`/api/v1/plans/${seg(plan.id)}/vms/${seg(vm.id)}`, { migration: vm.migrationId }); }
    catch (e) { replace(detail, errorBox(e)); return; }
    // The disks are DiskTransfer's tasks (DiskAllocation's count claims, not bytes).
    const transfer = view.pipeline.find((s) => s.name === "DiskTransfer");
    const diskRows = (transfer ? transfer.tasks : []).map((t) => {
      const name = t.name || t.id;
      const tr = h("tr", {}, diskCells(name, t.progress.completed, t.progress.total, t.rateBytesPerSecond, t.state === "Running" ? t.etaSeconds : null));
      const state = h("td", {}, badge(t.state));
      tr.append(state);
      disks.set(t.id, { tr, state, name });
      return tr;
    });
    const parts = [
      h("h2", { tabindex: -1 }, `VM ${view.name} `, badge(view.phase)),
      h("dl", { class: "facts" },
        h("dt", {}, "Step"), h("dd", {}, view.step || ""),
        h("dt", {}, "Target"), h("dd", {}, view.targetVm ? `${view.targetVm.namespace}/${view.targetVm.name}` : view.targetName),
        h("dt", {}, "Copied"), h("dd", {}, `${bytes(view.progress.completed)} of ${bytes(view.progress.total)}`),
        h("dt", {}, "Started"), h("dd", {}, when(view.startedAt)),
        h("dt", {}, "Ended"), h("dd", {}, when(view.completedAt))),
    ];
    if (view.error) parts.push(h("div", { class: "error", role: "alert" }, `${view.error.reason}: ${view.error.message}`));
    parts.push(table("Steps", [
      { title: "Step", cell: (s) => s.name },
      { title: "State", cell: (s) => badge(s.state) },
      { title: "Progress", cell: (s) => {
        if (!s.progress || !s.progress.total) return "";
        // Bytes for the copy; other steps count their own units (claims, precopies).
        return s.name === "DiskTransfer" ? meter(s.progress.completed, s.progress.total, s.name) : `${s.progress.completed} of ${s.progress.total}`;
      } },
      { title: "Started", cell: (s) => when(s.startedAt) },
      { title: "Error", cell: (s) => s.error ? `${s.error.reason}: ${s.error.message}` : "" },
    ], view.pipeline));
    if (diskRows.length) {
      parts.push(h("table", {}, h("caption", {}, "Disks"),
        h("thead", {}, h("tr", {}, ["Disk", "Copied", "Rate", "ETA", "State"].map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", {}, diskRows)));
    }
    if (view.phase === "Failed") parts.push(await logs(view));
    replace(detail, parts);
    if (focus) detail.querySelector("h2").focus();
  }

  async function logs(view) {
    const box = h("div", {}, h("h3", {}, "Why it failed"));
    try {
      const o = await get(`/api/v1/migrations/${seg(view.migrationId)}/vms/${seg(view.id)}`);
      const found = [];
      const diskNames = new Map(view.pipeline.flatMap((s) => (s.tasks || []).map((x) => [x.id, x.name])));
      for (const step of o.pipeline || []) {
        const bad = (step.tasks || []).filter((t) => t.error);
        if (step.error && !bad.length) found.push({ where: step.name, error: step.error, detail: step.detail || {} });
        for (const t of bad) found.push({ where: `${step.name}, disk ${diskNames.get(t.task) || t.task}`, error: t.error, detail: t.detail || {} });
      }
      if (!found.length) box.append(h("p", {}, "No failed step was recorded."));
      for (const f of found) {
        const lines = String(f.detail.log || "").replace(/\n+$/, "").split("\n").filter((l, i, a) => a.length > 1 || l);
        const tail = lines.slice(-LOG_LINES);
        box.append(h("h4", {}, f.where),
          h("p", {}, `${f.error.reason} (${f.error.permanent ? "permanent" : "temporary"}): ${f.error.message}`),
          f.detail.pod ? h("p", { class: "note" }, `Pod ${f.detail.pod}${f.detail.recreations ? `, recreated ${f.detail.recreations} times` : ""}`) : "",
          tail.length ? h("div", {}, h("p", {}, `Last ${tail.length} log lines of the populator:`), h("pre", { class: "log", tabindex: 0, "aria-label": `Log of ${f.where}` }, tail.join("\n"))) : h("p", { class: "note" }, "No log was kept."));
      }
    } catch (e) { box.append(errorBox(e)); }
    return box;
  }

  // --- live ---------------------------------------------------------------------------------
  let pending = null;
  async function refresh() {
    plan = await get(`/api/v1/plans/${seg(plan.id)}`);
    await drawHead();
  }
  function later() {
    if (pending) return;
    pending = setTimeout(async () => { pending = null; try { await refresh(); } catch { /* the next frame retries */ } }, 800);
  }
  let vmPending = null;
  const stop = stream("/api/v1/planner/events", { plan: plan.id, since: 0 }, (type, data) => {
    if (type === "plan" || type === "migration") {
      if (type === "plan" && plan.status && data.revision === plan.status.revision) return;
      later();
    } else if (type === "vm") {
      const known = latest.get(data.id);
      if (!known || known.migrationId !== data.migrationId || data.revision >= known.revision) latest.set(data.id, data);
      const row = rows.get(data.id);
      if (row && data.revision >= row.vm.revision && data.migrationId === row.vm.migrationId) {
        fillRow(row.tr, data);
        row.vm = data;
      }
      if (chosen && data.id === chosen.id && !vmPending && data.revision !== chosen.revision) {
        chosen = data;
        vmPending = setTimeout(async () => { vmPending = null; await drawVm(false); }, 500);
      }
    }
  }, (state) => { live.textContent = state === "open" ? "Live" : "Reconnecting…"; });

  phase.addEventListener("change", () => { cursor.reset(); loadVms(); });
  replace(main, head, summary,
    h("h2", {}, "VMs"),
    h("div", { class: "toolbar" }, h("label", { for: "vm-phase" }, "Show"), phase),
    vmsBox, detail);
  await drawHead();
  await loadVms();
  return () => { stop(); if (stopProgress) stopProgress(); clearTimeout(pending); clearTimeout(vmPending); };
}
