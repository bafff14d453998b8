// The HTTP APIs, as the console calls them: the bearer token (kept in sessionStorage only,
// so it ends with the tab), errors turned into sentences, and server-sent-event streams
// read with fetch (EventSource cannot send an Authorization header).

const KEY = "hoist.token";

export const auth = {
  get token() { return sessionStorage.getItem(KEY); },
  set(token) { sessionStorage.setItem(KEY, token); },
  clear() { sessionStorage.removeItem(KEY); },
};

// API paths are absolute (/api/v1/...); the console may itself live under a prefix, so they
// are resolved against the directory above /ui/.
export function apiUrl(path, query) {
  const url = new URL("../" + path.replace(/^\//, ""), document.baseURI);
  for (const [k, v] of Object.entries(query || {})) {
    if (v === undefined || v === null || v === "") continue;
    if (Array.isArray(v)) v.forEach((x) => url.searchParams.append(k, x));
    else url.searchParams.set(k, String(v));
  }
  return url;
}

export class ApiError extends Error {
  constructor(status, body) {
    super(describe(status, body));
    this.status = status;
    this.body = body;
  }
}

// An API's error body as a sentence: {detail: "..."}, {detail: [{loc, msg}]} (422: every
// problem, where), {detail: {message, problems}} (a start refused by validation).
export function describe(status, body) {
  const detail = body && typeof body === "object" ? body.detail : body;
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    return detail.map((p) => {
      const where = (p.loc || []).filter((x) => x !== "body").join(".");
      return where ? `${where}: ${p.msg}` : p.msg;
    }).join("\n");
  }
  if (detail && typeof detail === "object") {
    const lines = [detail.message || ""];
    for (const p of detail.problems || []) lines.push(`${p.severity}: ${p.message}`);
    return lines.filter(Boolean).join("\n");
  }
  return `HTTP ${status}`;
}

function headers(extra) {
  const h = { Accept: "application/json", ...extra };
  const token = auth.token;
  if (token) h.Authorization = `Bearer ${token}`;
  return h;
}

export async function call(method, path, { query, body, ifMatch } = {}) {
  const extra = {};
  if (body !== undefined) extra["Content-Type"] = "application/json";
  if (ifMatch) extra["If-Match"] = ifMatch;
  let r;
  try {
    r = await fetch(apiUrl(path, query), {
      method,
      headers: headers(extra),
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
  } catch (e) {
    throw new ApiError(0, { detail: `the console did not answer (${e.message}); is it running?` });
  }
  if (r.status === 204) return null;
  let data = null;
  const text = await r.text();
  try { data = text ? JSON.parse(text) : null; } catch { data = { detail: text }; }
  if (r.status === 401) window.dispatchEvent(new CustomEvent("hoist:unauthorized"));
  if (!r.ok) throw new ApiError(r.status, data);
  return data;
}

export const get = (path, query) => call("GET", path, { query });
export const post = (path, body, query) => call("POST", path, { body, query });
export const patch = (path, body, ifMatch) => call("PATCH", path, { body, ifMatch });
export const put = (path, body) => call("PUT", path, { body });
export const del = (path) => call("DELETE", path);
export const seg = (v) => encodeURIComponent(String(v));

// Every page of a list that pages by cursor (``next``), up to ``max`` items.
export async function all(path, query = {}, max = 10000) {
  const items = [];
  let cursor;
  do {
    const page = await get(path, { ...query, limit: 1000, cursor });
    items.push(...page.items);
    cursor = page.next;
  } while (cursor && items.length < max);
  return items;
}

// A server-sent-events stream: onEvent(type, data, id) per frame. Reconnects after an error
// with Last-Event-ID (the streams resume from it), until the returned stop() is called.
export function stream(path, query, onEvent, onState = () => {}) {
  const controller = new AbortController();
  let lastId = null;
  let stopped = false;
  async function once() {
    const h = headers({ Accept: "text/event-stream" });
    if (lastId) h["Last-Event-ID"] = lastId;
    const q = lastId ? { ...query, since: undefined } : query;
    const r = await fetch(apiUrl(path, q), { headers: h, signal: controller.signal, cache: "no-store" });
    if (r.status === 401) { window.dispatchEvent(new CustomEvent("hoist:unauthorized")); stopped = true; return; }
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    onState("open");
    const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value.replace(/\r\n/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let type = "message", data = [], id = null;
        for (const line of block.split("\n")) {
          if (line.startsWith(":")) continue;
          const i = line.indexOf(":");
          const field = i < 0 ? line : line.slice(0, i);
          const val = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
          if (field === "event") type = val;
          else if (field === "data") data.push(val);
          else if (field === "id") id = val;
        }
        if (id) lastId = id;
        if (data.length) {
          let parsed;
          try { parsed = JSON.parse(data.join("\n")); } catch { continue; }
          onEvent(type, parsed, id);
        }
      }
    }
  }
  (async () => {
    while (!stopped) {
      try { await once(); } catch (e) { if (stopped) return; }
      if (stopped) return;
      onState("reconnecting");
      await new Promise((ok) => setTimeout(ok, 2000));
    }
  })();
  return () => { stopped = true; controller.abort(); };
}
