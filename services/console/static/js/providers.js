// Providers: their status and inventory counts (live, from the inventory's event stream),
// refresh, and adding one, with the server certificate's SHA-256 fingerprint shown for the
// user to compare before it is pinned.

import { get, post, del, seg, stream } from "./api.js";
import { h, replace, field, select, table, badge, when, errorBox, announce, debounce } from "./ui.js";
import { names, TYPE_NAMES } from "./state.js";

export async function render(main) {
  const list = h("div", {});
  const form = addForm(async () => { await load(); });
  replace(main,
    h("h1", {}, "Providers"),
    h("p", { class: "note" }, "Sources (oVirt, OpenStack) and targets (KubeVirt clusters). Their status follows the inventory as it changes."),
    list,
    h("h2", {}, "Add a provider"),
    form,
  );
  async function load() {
    try {
      const items = await names.load();
      replace(list, table("Providers", [
        { title: "Name", cell: (p) => p.name },
        { title: "Type", cell: (p) => TYPE_NAMES[p.type] || p.type },
        { title: "URL", cell: (p) => p.url || "the cluster Hoist runs in" },
        { title: "Status", cell: status },
        { title: "Inventory", cell: (p) => counts(p.status.counts) },
        { title: "Last refresh", cell: (p) => when(p.status.lastRefresh) },
        { title: "Actions", cell: actions },
      ], items));
    } catch (e) {
      replace(list, errorBox(e));
    }
  }
  function actions(p) {
    return h("div", { class: "toolbar" },
      h("button", { type: "button", "aria-label": `Refresh ${p.name}`, onclick: async () => {
        try { await post(`/api/v1/providers/${seg(p.id)}/refresh`); announce(`Refreshing ${p.name}`); }
        catch (e) { alert(e.message); }
      } }, "Refresh"),
      h("button", { type: "button", class: "danger", "aria-label": `Delete ${p.name}`, onclick: async () => {
        if (!confirm(`Delete provider ${p.name}? Plans and maps that use it must go first.`)) return;
        try { await del(`/api/v1/providers/${seg(p.id)}`); announce(`Deleted ${p.name}`); await load(); }
        catch (e) { alert(e.message); }
      } }, "Delete"),
    );
  }
  await load();
  const later = debounce(load, 500);
  return stream("/api/v1/inventory/events", {}, (type) => { if (type === "provider") later(); });
}

function status(p) {
  const failed = (p.status.conditions || []).filter((c) => c.status === "False" || c.status === false);
  return h("div", {}, badge(p.status.phase),
    failed.map((c) => h("div", { class: "note" }, `${c.type}: ${c.message || c.reason || ""}`)));
}

function counts(c) {
  if (!c) return "";
  const plural = (k, n) => (n === 1 ? k : k.endsWith("s") ? `${k}es` : `${k}s`);
  const parts = Object.entries(c).filter(([, n]) => n).map(([k, n]) => `${n} ${plural(k, n)}`);
  return parts.join(", ");
}

const CREDENTIALS = {
  ovirt: [["user", "User (user@domain)", "text"], ["password", "Password", "password"]],
  openstack: [["username", "User name", "text"], ["password", "Password", "password"],
    ["projectName", "Project", "text"], ["domainName", "Domain", "text"], ["regionName", "Region (optional)", "text"]],
  kubevirt: [["token", "Service account token (a remote cluster only)", "password"]],
};

function addForm(done) {
  const type = select([["ovirt", "oVirt"], ["openstack", "OpenStack"], ["kubevirt", "KubeVirt"]], "ovirt", { name: "type" });
  const name = h("input", { name: "name", required: true, pattern: "[a-z0-9]([-a-z0-9]*[a-z0-9])?", autocomplete: "off" });
  const url = h("input", { name: "url", type: "url", autocomplete: "off", size: 50 });
  const creds = h("fieldset", {});
  const tls = h("fieldset", {});
  const problems = h("div", { "aria-live": "polite" });
  let inputs = {};
  let checked = null;
  const pin = h("input", { type: "checkbox", name: "pin" });
  const ca = h("textarea", { name: "caCert" });
  const insecure = h("input", { type: "checkbox", name: "insecure" });
  const certView = h("div", { "aria-live": "polite" });

  function draw() {
    inputs = {};
    replace(creds, h("legend", {}, "Credentials"),
      CREDENTIALS[type.value].map(([key, label, kind]) => {
        const input = h("input", { name: key, type: kind, autocomplete: "off" });
        if (key === "domainName") input.value = "Default";
        inputs[key] = input;
        return field(label, input);
      }),
      h("p", { class: "note" }, "Stored in a Kubernetes Secret; never shown again."));
    replace(tls, h("legend", {}, "Server certificate"),
      h("div", { class: "toolbar" },
        h("button", { type: "button", onclick: check }, "Check certificate"),
        h("span", { class: "note" }, "Shows the certificate the URL presents, before anything is sent to it.")),
      certView,
      h("div", { class: "field inline" }, pin, h("label", { for: pin.id = pin.id || "pin-cert" }, "I compared the SHA-256 fingerprint above with the server's: pin it")),
      field("or a CA certificate (PEM) to verify it with", ca),
      h("div", { class: "field inline" }, insecure, h("label", { for: insecure.id = insecure.id || "insecure-tls" }, "Do not verify the server at all (insecure)")),
    );
    url.required = type.value !== "kubevirt";
    checked = null;
  }
  type.addEventListener("change", draw);
  url.addEventListener("change", () => { checked = null; replace(certView); pin.checked = false; });

  async function check() {
    replace(certView, h("p", {}, "Asking the server…"));
    try {
      const answer = await get("/api/v1/providers/certificate", { url: url.value });
      checked = answer;
      const c = answer.certificate;
      replace(certView, h("dl", { class: "facts" },
        h("dt", {}, "Subject"), h("dd", {}, c.subject),
        h("dt", {}, "Issuer"), h("dd", {}, c.issuer),
        h("dt", {}, "Valid"), h("dd", {}, `${when(c.notBefore)} to ${when(c.notAfter)}`),
        h("dt", {}, "SHA-256"), h("dd", {}, h("code", { class: "fp", "data-testid": "sha256" }, c.sha256Fingerprint)),
        h("dt", {}, "Trusted"), h("dd", {}, answer.trustedBySystem ? "yes, by the system's CAs" : `no: ${answer.reason}`),
      ));
      announce(`Certificate SHA-256 ${c.sha256Fingerprint}`);
    } catch (e) {
      replace(certView, errorBox(e));
    }
  }

  const form = h("form", {
    onsubmit: async (ev) => {
      ev.preventDefault();
      const credentials = {};
      for (const [k, input] of Object.entries(inputs)) if (input.value) credentials[k] = input.value;
      const tlsBody = {};
      if (pin.checked) {
        if (!checked) { replace(problems, errorBox("Check the certificate first, then compare its fingerprint.")); return; }
        tlsBody.fingerprint = checked.certificate.sha256Fingerprint;
      }
      if (ca.value.trim()) tlsBody.caCert = ca.value;
      if (insecure.checked) tlsBody.insecureSkipVerify = true;
      const body = { name: name.value, type: type.value, url: url.value, credentials, tls: tlsBody };
      replace(problems, h("p", {}, "Testing the connection…"));
      try {
        const made = await post("/api/v1/providers", body);
        replace(problems, h("p", { role: "status" }, `Provider ${made.name} added (${made.status.phase}).`));
        form.reset(); draw();
        await done();
      } catch (e) {
        replace(problems, errorBox(e));
        const cert = e.body && Array.isArray(e.body.detail) && e.body.detail.find((p) => p.certificate);
        if (cert) {
          checked = { certificate: cert.certificate };
          replace(certView, h("p", {}, "The server presented SHA-256 ", h("code", { class: "fp" }, cert.certificate.sha256Fingerprint)));
        }
      }
    },
  },
    h("div", { class: "row" }, field("Type", type), field("Name", name)),
    field("URL", url, "oVirt: https://engine/ovirt-engine/api · OpenStack: the Keystone v3 URL · KubeVirt: empty for the cluster Hoist runs in"),
    creds, tls, problems,
    h("button", { type: "submit", class: "primary" }, "Add provider"),
  );
  draw();
  return form;
}
