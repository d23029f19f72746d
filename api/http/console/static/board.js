// The task board: a keyset-paged list with filters, live updates over SSE, bulk cancel and
// retry by filter, and each worker's heartbeat and lease. With preset {status:
// "dead_lettered"} it is the dead-letter view.

import { age, api, el, guarded, query, readEvents, say, table } from "./common.js";

const STATUSES = ["", "pending", "assigned", "running", "completed", "failed", "timed_out",
  "retry_scheduled", "cancelled", "dead_lettered"];
const PRIORITIES = ["", "high", "normal", "low"];

export function boardView(root, params, preset) {
  const stop = new AbortController();
  const filter = {
    status: preset.status || params.get("status") || "",
    type: params.get("type") || "",
    priority: params.get("priority") || "",
  };
  const rows = el("tbody", { id: "task-rows" });
  const more = el("button", { id: "more-tasks", hidden: true }, "More");
  const workers = el("div", { id: "workers" });
  let cursor = null;

  const choose = (name, values) => el("label", {}, name,
    el("select", { name, id: `filter-${name}`, disabled: Boolean(preset[name]) },
      values.map((v) => el("option", { value: v, selected: v === filter[name] }, v || "any"))));
  const form = el("form", { class: "row", id: "board-filter" },
    choose("status", STATUSES),
    el("label", {}, "type", el("input", { name: "type", id: "filter-type", value: filter.type })),
    choose("priority", PRIORITIES),
    el("button", { type: "submit" }, "Apply"),
    el("button", { type: "button", id: "bulk-cancel", class: "danger", onclick: () => bulk("cancel") },
      "Cancel all matching"),
    el("button", { type: "button", id: "bulk-retry", onclick: () => bulk("retry") }, "Retry all matching"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const data = new FormData(form);
    filter.status = preset.status || data.get("status") || "";
    filter.type = data.get("type") || "";
    filter.priority = data.get("priority") || "";
    load(true);
  });

  root.append(
    el("section", {}, el("h2", {}, preset.status ? "Dead-lettered tasks" : "Tasks"), form,
      el("table", { id: "tasks" }, el("thead", {}, el("tr", {},
        ["task", "type", "status", "priority", "attempt", "assignee", "submitted", "updated", "error"]
          .map((h) => el("th", {}, h)))), rows), more),
    el("section", {}, el("h2", {}, "Workers"), workers));

  async function load(fresh) {
    await guarded(async () => {
      const page = await api(`/v1/tasks${query({ ...filter, cursor: fresh ? null : cursor, limit: 100 })}`);
      if (fresh) rows.replaceChildren();
      for (const task of page.tasks) rows.append(row(task));
      cursor = page.cursor;
      more.hidden = !cursor;
    });
  }
  more.addEventListener("click", () => load(false));

  async function bulk(kind) {
    const body = { status: filter.status || null, priority: filter.priority || null, type: filter.type || null };
    await guarded(async () => {
      const result = await api(`/v1/tasks/bulk-${kind}`, { method: "POST", body });
      say(`bulk ${kind}: ${result.matched} matched, ${result.changed} changed, ${result.refused} refused`);
      document.getElementById("view").dataset.bulk = `${kind}:${result.changed}`;
      await load(true);
    });
  }

  function matches(task) {
    return (!filter.status || task.status === filter.status)
      && (!filter.type || task.type === filter.type)
      && (!filter.priority || task.priority === filter.priority);
  }

  async function changed(taskId) {
    const task = await guarded(() => api(`/v1/tasks/${encodeURIComponent(taskId)}`));
    if (!task) return;
    const old = document.getElementById(`task-row-${taskId}`);
    if (old) old.replaceWith(row(task, true));
    else if (matches(task)) rows.prepend(row(task, true));
  }

  async function refreshWorkers() {
    const found = await guarded(() => api("/v1/workers"));
    if (!found) return;
    workers.replaceChildren(found.workers.length === 0 ? el("p", {}, "No worker holds a task now.") :
      table([
        ["worker", (w) => w.worker],
        ["tasks", (w) => w.tasks.length],
        ["last heartbeat", (w) => age(w.last_heartbeat)],
        ["lease ends", (w) => (w.lease_expires_at ? `in ${(-(Date.now() - Date.parse(w.lease_expires_at)) / 1000).toFixed(1)} s` : "")],
      ], found.workers, (w) => ({ class: "worker", "data-worker": w.worker })));
  }

  load(true);
  refreshWorkers();
  const timer = setInterval(refreshWorkers, 2000);
  readEvents("/v1/tasks/live", (message) => {
    if (message.event === "task") changed(JSON.parse(message.data).task_id);
  }, stop.signal);
  return () => { stop.abort(); clearInterval(timer); };
}

function row(task, live = false) {
  const link = el("a", { href: `#streams?stream=task-${task.task_id}` }, task.task_id);
  return el("tr", { id: `task-row-${task.task_id}`, class: live ? "live" : "", "data-status": task.status },
    el("td", { class: "mono" }, link),
    el("td", {}, task.type),
    el("td", { class: `status-${task.status}` }, task.status),
    el("td", {}, task.priority),
    el("td", {}, `${task.attempt}/${task.max_attempts}`),
    el("td", {}, task.assignee || ""),
    el("td", {}, task.submitted_at ? new Date(task.submitted_at).toLocaleTimeString() : ""),
    el("td", {}, task.updated_at ? new Date(task.updated_at).toLocaleTimeString() : ""),
    el("td", {}, task.error || ""));
}
