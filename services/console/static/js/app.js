// The console's shell: sign-in, navigation (hash routes, so any static server and any
// prefix work), and one page at a time, whose streams are closed when it is left.

import { auth, get, ApiError } from "./api.js";
import { h, replace, field, errorBox, announce } from "./ui.js";
import * as providers from "./providers.js";
import * as inventory from "./inventory.js";
import * as maps from "./maps.js";
import * as plans from "./plans.js";
import * as plan from "./plan.js";
import * as events from "./events.js";
import { names, go } from "./state.js";

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const signout = document.getElementById("signout");
let cleanup = null;

const ROUTES = [
  [/^\/providers$/, providers.render, "Providers"],
  [/^\/inventory$/, inventory.render, "Inventory"],
  [/^\/maps$/, maps.render, "Maps"],
  [/^\/maps\/(network|storage)\/new$/, maps.renderEdit, "Maps"],
  [/^\/maps\/(network|storage)\/([^/]+)$/, maps.renderEdit, "Maps"],
  [/^\/plans$/, plans.render, "Plans"],
  [/^\/plans\/new$/, plans.renderWizard, "Plans"],
  [/^\/plans\/([^/]+)$/, plan.render, "Plans"],
  [/^\/events$/, events.render, "Events"],
];

function parse() {
  const raw = location.hash.replace(/^#/, "") || "/plans";
  const [path, qs] = raw.split("?");
  return { path, query: new URLSearchParams(qs || "") };
}

async function route() {
  if (cleanup) { try { cleanup(); } catch { /* a page's own */ } cleanup = null; }
  if (!auth.token) return login();
  nav.hidden = false;
  signout.hidden = false;
  const { path, query } = parse();
  const found = ROUTES.find(([re]) => re.test(path));
  if (!found) { go("/plans"); return; }
  const [re, render, section] = found;
  const params = path.match(re).slice(1).map(decodeURIComponent);
  for (const a of nav.querySelectorAll("a")) {
    if (a.textContent === section) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  replace(main, h("p", {}, "Loading…"));
  try {
    if (!names.byId.size) await names.load();
    cleanup = (await render(main, params, query)) || null;
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return;
    replace(main, h("h1", {}, section), errorBox(e));
  }
  const heading = main.querySelector("h1");
  document.title = `${heading ? heading.textContent : section} · Hoist`;
  if (heading) { heading.tabIndex = -1; heading.focus({ preventScroll: true }); }
}

function login(message) {
  nav.hidden = true;
  signout.hidden = true;
  document.title = "Sign in · Hoist";
  const token = h("input", { type: "password", name: "token", autocomplete: "off", required: true });
  const problem = h("div", { "aria-live": "polite" }, message ? errorBox(message) : "");
  const form = h("form", {
    onsubmit: async (ev) => {
      ev.preventDefault();
      auth.set(token.value.trim());
      try {
        await names.load();
      } catch (e) {
        auth.clear();
        replace(problem, errorBox(e.status === 401 ? "That token was refused (HTTP 401)." : e));
        token.focus();
        return;
      }
      announce("Signed in");
      route();
    },
  },
    field("API token", token, "A token of HOIST_AUTH_TOKENS. Kept in this tab only, until you sign out or close it."),
    h("button", { type: "submit", class: "primary" }, "Sign in"),
  );
  replace(main, h("h1", {}, "Sign in to Hoist"), problem, form);
  token.focus();
}

signout.addEventListener("click", () => { auth.clear(); names.byId = new Map(); login(); announce("Signed out"); });
window.addEventListener("hoist:unauthorized", () => {
  if (!auth.token) return;
  auth.clear();
  if (cleanup) { try { cleanup(); } catch { /* */ } cleanup = null; }
  login("The API refused the token (HTTP 401): sign in again.");
});
window.addEventListener("hashchange", route);
route();
