// The audit trail: the query form (GET /v1/audit/events), export (CSV or JSON Lines), and
// "verify", which checks an event's inclusion proof here in the browser.

import { api, el, guarded, json, query, say, table } from "./common.js";
import { verifyInclusion } from "./proofs.js";

const FIELDS = ["actor", "type", "stream", "category", "correlation", "since", "until"];

export function auditView(root, params) {
  const inputs = Object.fromEntries(FIELDS.map((name) => [name, el("input", {
    name, id: `audit-${name}`, value: params.get(name) || "",
    type: name === "since" || name === "until" ? "datetime-local" : "text",
  })]));
  const vkey = el("input", { id: "audit-vkey", size: 60, placeholder: "optional: the log's verifier key (chronicle audit public-key)", value: localStorage.getItem("chronicle.vkey") || "" });
  const body = el("div", { id: "audit-events" });
  const more = el("button", { id: "more-audit", hidden: true }, "More");
  const verdict = el("div", { id: "verify-result" });
  let cursor = null;
  let shown = 0;
  const form = el("form", { class: "row", id: "audit-form" },
    FIELDS.map((name) => el("label", {}, name, inputs[name])),
    el("button", { type: "submit" }, "Query"),
    el("button", { type: "button", id: "export-csv", onclick: () => download("csv") }, "Export CSV"),
    el("button", { type: "button", id: "export-jsonl", onclick: () => download("jsonl") }, "Export JSON Lines"));
  root.append(el("section", {}, el("h2", {}, "Audit trail"), form, body, more),
    el("section", {}, el("h2", {}, "Verify an event"), el("div", { class: "row" }, el("label", {}, "verifier key", vkey)), verdict));

  function filter() {
    const values = {};
    for (const name of FIELDS) {
      let value = inputs[name].value.trim();
      if (value && (name === "since" || name === "until")) value = new Date(value).toISOString();
      values[name] = value;
    }
    return values;
  }

  async function load(fresh) {
    await guarded(async () => {
      const page = await api(`/v1/audit/events${query(fresh ? { ...filter(), limit: 100 } : { cursor, limit: 100 })}`);
      if (fresh) { body.replaceChildren(); shown = 0; }
      shown += page.events.length;
      body.append(table([
        ["position", (e) => e.global_position],
        ["stream", (e) => e.stream_id],
        ["version", (e) => e.stream_version],
        ["type", (e) => e.type],
        ["actor", (e) => (e.metadata || {}).actor || ""],
        ["recorded", (e) => e.recorded_at],
        ["data", (e) => json(e.data)],
        ["", (e) => el("button", { class: "verify", "data-event": e.event_id, onclick: () => verify(e.event_id) }, "verify")],
      ], page.events, (e) => ({ class: "audit-event", "data-event": e.event_id })));
      say(`${shown} events${page.more ? " (more)" : ""}`);
      cursor = page.cursor;
      more.hidden = !page.more;
    });
  }

  async function download(format) {
    await guarded(async () => {
      const response = await api(`/v1/audit/export${query({ ...filter(), format })}`, { raw: true });
      const blob = await response.blob();
      const link = el("a", { href: URL.createObjectURL(blob), download: `audit.${format}` });
      document.body.append(link);
      link.click();
      link.remove();
      say(`exported ${blob.size} bytes as ${format}`);
    });
  }

  async function verify(eventId) {
    localStorage.setItem("chronicle.vkey", vkey.value.trim());
    verdict.replaceChildren(el("p", {}, `checking ${eventId}...`));
    await guarded(async () => {
      const latest = await api("/v1/audit/checkpoint");
      const size = Number(latest.split("\n")[1]);
      const proof = await api(`/v1/audit/proofs/${eventId}${query({ size })}`);
      const report = await verifyInclusion(proof, latest, eventId, vkey.value.trim());
      verdict.replaceChildren(
        el("p", { id: "verify-verdict", class: report.ok ? "ok" : "bad" },
          report.ok ? `verified: event ${eventId} is leaf ${proof.index} of the signed tree of ${proof.size} leaves` : "NOT verified"),
        table([["check", (c) => c.name], ["result", (c) => el("span", { class: c.ok === null ? "" : c.ok ? "ok" : "bad" }, c.ok === null ? "skipped" : c.ok ? "pass" : "FAIL")], ["detail", (c) => c.detail]],
          report.checks, (c) => ({ class: "check" })));
    });
  }

  form.addEventListener("submit", (event) => { event.preventDefault(); load(true); });
  more.addEventListener("click", () => load(false));
  load(true);
}
