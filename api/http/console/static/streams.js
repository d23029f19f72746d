// The stream browser (every event with its data and metadata, filtered by type) and time
// travel (a stream's state at any version, and what changed from the version before).

import { api, el, guarded, json, query, say, table } from "./common.js";

const PAGE = 1000;

function streamPicker(id, value) {
  const list = el("datalist", { id: `${id}-known` });
  // Suggestions only: whatever the key may read of tasks, agents and runs.
  Promise.allSettled([
    api("/v1/tasks?limit=50").then((p) => p.tasks.map((t) => `task-${t.task_id}`)),
    api("/v1/agents?limit=50").then((p) => p.agents.map((a) => `agent-${a.agent_id}`)),
    api("/v1/runs?limit=50").then((p) => p.items.map((r) => `run-${r.run_id}`)),
  ]).then((found) => {
    for (const result of found) {
      if (result.status === "fulfilled") for (const name of result.value) list.append(el("option", { value: name }));
    }
  });
  return [el("input", { id, name: "stream", value: value || "", list: list.id, size: 48, placeholder: "task-..., agent-..., run-..." }), list];
}

async function allEvents(stream) {
  const events = [];
  for (let from = 1; ; from += PAGE) {
    const page = await api(`/v1/streams/${encodeURIComponent(stream)}/events${query({ from_version: from, limit: PAGE })}`);
    events.push(...page);
    if (page.length < PAGE) return events;
  }
}

export function streamsView(root, params) {
  const [input, list] = streamPicker("stream-id", params.get("stream"));
  const type = el("select", { id: "event-type" }, el("option", { value: "" }, "any type"));
  const body = el("div", { id: "stream-events" });
  let events = [];
  const form = el("form", { class: "row", id: "stream-form" },
    el("label", {}, "stream", input), list, el("label", {}, "event type", type),
    el("button", { type: "submit" }, "Load"));
  root.append(el("section", {}, el("h2", {}, "Stream browser"), form, body));

  function render() {
    const shown = events.filter((e) => !type.value || e.type === type.value);
    body.replaceChildren(el("p", {}, `${shown.length} of ${events.length} events`), table([
      ["version", (e) => e.version],
      ["position", (e) => e.position],
      ["type", (e) => e.type],
      ["recorded", (e) => e.recorded_at],
      ["data", (e) => json(e.data)],
      ["metadata", (e) => json(e.metadata)],
    ], shown, (e) => ({ class: "event", "data-type": e.type })));
  }

  async function load() {
    await guarded(async () => {
      events = await allEvents(input.value.trim());
      const kinds = [...new Set(events.map((e) => e.type))].sort();
      const keep = type.value;
      type.replaceChildren(el("option", { value: "" }, "any type"),
        ...kinds.map((k) => el("option", { value: k, selected: k === keep }, k)));
      render();
    });
  }
  form.addEventListener("submit", (event) => { event.preventDefault(); load(); });
  type.addEventListener("change", render);
  if (input.value) load();
}

export function travelView(root, params) {
  const [input, list] = streamPicker("travel-stream", params.get("stream"));
  const slider = el("input", { type: "range", id: "travel-version", min: 1, max: 1, value: 1, disabled: true });
  const label = el("span", { id: "travel-label" });
  const event = el("div", { id: "travel-event" });
  const state = el("div", { id: "travel-state" });
  const diff = el("div", { id: "travel-diff" });
  let events = [];
  let asked = 0;
  const form = el("form", { class: "row", id: "travel-form" },
    el("label", {}, "stream", input), list, el("button", { type: "submit" }, "Load"));
  root.append(el("section", {}, el("h2", {}, "Time travel"), form,
    el("div", { class: "row" }, el("label", {}, "version", slider), label), event),
  el("div", { class: "grid" },
    el("section", {}, el("h2", {}, "State at this version"), state),
    el("section", {}, el("h2", {}, "Change from the version before"), diff)));

  const stateAt = async (stream, version) => (version < 1 ? {} :
    (await api(`/v1/streams/${encodeURIComponent(stream)}/state${query({ version })}`)).state);

  async function show() {
    const version = Number(slider.value);
    const mine = ++asked; // a slider moves faster than answers come: keep the newest only
    const stream = input.value.trim();
    await guarded(async () => {
      const [before, after] = await Promise.all([stateAt(stream, version - 1), stateAt(stream, version)]);
      if (mine !== asked) return;
      const at = events[version - 1];
      label.textContent = `${version} of ${events.length}`;
      root.dataset.version = String(version);
      event.replaceChildren(el("p", {}, `event ${version}: `, el("strong", {}, at.type), ` at ${at.recorded_at}`), json(at.data));
      state.replaceChildren(json(after));
      diff.replaceChildren(renderDiff(diffStates(before, after)));
    });
  }

  async function load() {
    await guarded(async () => {
      events = await allEvents(input.value.trim());
      if (events.length === 0) { say("that stream has no events"); return; }
      slider.max = String(events.length);
      slider.value = String(events.length);
      slider.disabled = false;
      await show();
    });
  }
  form.addEventListener("submit", (e) => { e.preventDefault(); load(); });
  slider.addEventListener("input", show);
  if (input.value) load();
}

// What changed between two JSON values, key by key (nested objects by path; arrays and
// scalars compare whole): [{path, kind: "added" | "removed" | "changed", before, after}].
export function diffStates(before, after, path = "") {
  const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
  if (!isObject(before) || !isObject(after)) {
    return JSON.stringify(before) === JSON.stringify(after) ? [] : [{ path: path || "(state)", kind: "changed", before, after }];
  }
  const changes = [];
  for (const key of [...new Set([...Object.keys(before), ...Object.keys(after)])].sort()) {
    const at = path ? `${path}.${key}` : key;
    if (!(key in before)) changes.push({ path: at, kind: "added", after: after[key] });
    else if (!(key in after)) changes.push({ path: at, kind: "removed", before: before[key] });
    else changes.push(...diffStates(before[key], after[key], at));
  }
  return changes;
}

function renderDiff(changes) {
  if (changes.length === 0) return el("p", {}, "no change");
  const show = (v) => (v === undefined ? "" : JSON.stringify(v));
  return el("ul", { class: "diff" }, changes.map((c) => el("li", { class: `diff-${c.kind}`, "data-path": c.path },
    `${c.kind} ${c.path}`, c.kind === "added" ? `: ${show(c.after)}` : "",
    c.kind === "removed" ? `: ${show(c.before)}` : "",
    c.kind === "changed" ? `: ${show(c.before)} → ${show(c.after)}` : "")));
}
