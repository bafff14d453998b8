// Small DOM helpers: elements built from data (text is always text, never markup, so no
// API string can inject anything), formats, and the pieces every page shares.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "value") el.value = v;
    else if (k === "checked" || k === "selected" || k === "disabled" || k === "hidden") el[k] = !!v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

let uid = 0;
export const nextId = (p = "f") => `${p}-${++uid}`;

// A labelled control: <div class=field><label for=id>text</label><control id=id></div>.
export function field(label, control, hint) {
  control.id = control.id || nextId();
  const parts = [h("label", { for: control.id }, label), control];
  if (hint) {
    const hid = nextId("hint");
    control.setAttribute("aria-describedby", hid);
    parts.push(h("span", { id: hid, class: "note" }, hint));
  }
  return h("div", { class: "field" }, parts);
}

export function select(options, value, attrs = {}) {
  return h("select", attrs, options.map(([v, text]) => h("option", { value: v, selected: v === value }, text)));
}

export function announce(message) {
  const el = document.getElementById("announcer");
  el.textContent = "";
  setTimeout(() => { el.textContent = message; }, 30);
}

export function errorBox(err) {
  return h("div", { class: "error", role: "alert" }, err && err.message ? err.message : String(err));
}

export function badge(value, prefix = "phase") {
  if (!value) return "";
  return h("span", { class: `badge ${prefix}-${value}` }, value);
}

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
export function bytes(n) {
  if (n === null || n === undefined) return "";
  let v = Number(n), i = 0;
  while (Math.abs(v) >= 1024 && i < UNITS.length - 1) { v /= 1024; i++; }
  return `${i ? v.toFixed(1) : v} ${UNITS[i]}`;
}
export const rate = (n) => (n ? `${bytes(n)}/s` : "");
export function duration(s) {
  if (s === null || s === undefined || !isFinite(s)) return "";
  s = Math.round(s);
  const hh = Math.floor(s / 3600), mm = Math.floor((s % 3600) / 60), ss = s % 60;
  if (hh) return `${hh}h ${mm}m`;
  if (mm) return `${mm}m ${ss}s`;
  return `${ss}s`;
}
export function when(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return isNaN(d) ? iso : d.toLocaleString();
}

// A progress bar with its numbers in words (the bar's accessible name says the same).
export function meter(done, total, label) {
  const pct = total ? Math.min(100, Math.floor((done * 100) / total)) : 0;
  const text = total ? `${bytes(done)} of ${bytes(total)} (${pct}%)` : bytes(done);
  return h("span", {}, h("progress", { max: 100, value: pct, "aria-label": `${label}: ${text}` }), " ", text);
}

// A table: columns [{title, cell(row) -> node|string, num?}], rows; caption for its name.
export function table(caption, columns, rows, rowAttrs = () => ({})) {
  return h("table", {},
    h("caption", {}, caption),
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col", class: c.num ? "num" : null }, c.title)))),
    h("tbody", {}, rows.map((r) => h("tr", rowAttrs(r), columns.map((c) => h("td", { class: c.num ? "num" : null }, c.cell(r)))))),
  );
}

export function debounce(fn, ms = 300) {
  let t;
  return (...args) => { clearTimeout(t); t = setTimeout(() => fn(...args), ms); };
}

// Pages by cursor: keeps the cursors of the pages seen so Previous works too.
export class Cursor {
  constructor() { this.stack = [null]; this.next = null; }
  get cursor() { return this.stack[this.stack.length - 1]; }
  get page() { return this.stack.length; }
  forward() { if (this.next) this.stack.push(this.next); }
  back() { if (this.stack.length > 1) this.stack.pop(); }
  reset() { this.stack = [null]; this.next = null; }
}

export function pager(cursor, shown, total, onMove, what = "items") {
  const first = (cursor.page - 1) * shown.size + 1;
  const label = total === undefined || total === null
    ? `page ${cursor.page}`
    : shown.count ? `${first.toLocaleString()}–${(first + shown.count - 1).toLocaleString()} of ${Number(total).toLocaleString()} ${what}` : `0 of ${Number(total).toLocaleString()} ${what}`;
  return h("div", { class: "pager", role: "group", "aria-label": `Pages of ${what}` },
    h("button", { type: "button", disabled: cursor.page <= 1, onclick: () => { cursor.back(); onMove(); } }, "Previous page"),
    h("span", {}, label),
    h("button", { type: "button", disabled: !cursor.next, onclick: () => { cursor.forward(); onMove(); } }, "Next page"),
  );
}
