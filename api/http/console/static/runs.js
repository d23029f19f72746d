// Training runs: the list (GET /v1/runs) and, for one run, its loss and accuracy curves over
// the epochs, Tamiyo's decisions and the rollbacks marked on them, and each seed slot's stage
// per epoch, drawn as inline SVG (GET /v1/runs/{id}/epochs).

import { api, el, guarded, table } from "./common.js";

const SVG = "http://www.w3.org/2000/svg";
const W = 860;
const H = 300;
const M = { left: 56, right: 56, top: 20, bottom: 40 };
const STAGES = {
  DORMANT: "#d5d8dc", GERMINATED: "#aed6f1", TRAINING: "#5dade2", BLENDING: "#48c9b0", HOLDING: "#f7dc6f",
  FOSSILIZED: "#27ae60", PRUNED: "#e74c3c", EMBARGOED: "#c0392b", RESETTING: "#f0b27a",
};
const SERIES = [
  { key: "train_loss", axis: "loss", color: "#2f5fd0", dash: "" },
  { key: "val_loss", axis: "loss", color: "#2f5fd0", dash: "5 3" },
  { key: "train_accuracy", axis: "accuracy", color: "#1e8449", dash: "" },
  { key: "val_accuracy", axis: "accuracy", color: "#1e8449", dash: "5 3" },
];

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

export function runsView(root, params) {
  const list = el("div", { id: "runs" });
  const detail = el("div", { id: "run-detail" });
  root.append(el("section", {}, el("h2", {}, "Training runs"), list), detail);

  async function open(runId) {
    await guarded(async () => {
      const epochs = (await api(`/v1/runs/${encodeURIComponent(runId)}/epochs`)).items;
      detail.replaceChildren(el("section", {}, el("h2", {}, `Run ${runId}`), chart(epochs), seedStrip(epochs),
        table([
          ["epoch", (e) => e.epoch],
          ["train loss", (e) => fixed(e.train_loss)],
          ["val loss", (e) => fixed(e.val_loss)],
          ["val accuracy", (e) => fixed(e.val_accuracy)],
          ["decision", (e) => [e.decision, e.decision_reason].filter(Boolean).join(": ")],
          ["rolled back", (e) => (e.rolled_back ? "yes" : "")],
        ], epochs)));
    });
  }

  guarded(async () => {
    const runs = (await api("/v1/runs")).items;
    if (runs.length === 0) { list.append(el("p", {}, "No training run for this tenant yet.")); return; }
    list.append(table([
      ["run", (r) => el("a", { href: `#runs?run=${r.run_id}`, class: "run-link", onclick: (e) => { e.preventDefault(); open(r.run_id); } }, r.run_id)],
      ["status", (r) => r.status],
      ["epochs", (r) => `${r.epochs_completed}/${r.epochs_planned ?? "?"}`],
      ["val accuracy", (r) => fixed(r.val_accuracy)],
      ["rollbacks", (r) => r.rollbacks],
      ["started", (r) => r.started_at],
    ], runs));
    open(params.get("run") || runs[0].run_id);
  });
}

function fixed(value) {
  return value === null || value === undefined ? "" : Number(value).toFixed(4);
}

function chart(epochs) {
  const xs = epochs.map((e) => e.epoch);
  const [x0, x1] = [Math.min(...xs), Math.max(Math.max(...xs), Math.min(...xs) + 1)];
  const losses = epochs.flatMap((e) => [e.train_loss, e.val_loss]).filter((v) => v !== null);
  const lossTop = Math.max(...losses, 0.001) * 1.1;
  const x = (epoch) => M.left + ((epoch - x0) / (x1 - x0)) * (W - M.left - M.right);
  const y = { loss: (v) => H - M.bottom - (v / lossTop) * (H - M.top - M.bottom), accuracy: (v) => H - M.bottom - v * (H - M.top - M.bottom) };
  const plot = svg("svg", { id: "run-chart", viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img", "aria-label": "loss and accuracy by epoch" });

  for (let i = 0; i <= 4; i += 1) { // grid and both y axes' ticks
    const yy = M.top + (i / 4) * (H - M.top - M.bottom);
    plot.append(svg("line", { class: "grid-line", x1: M.left, x2: W - M.right, y1: yy, y2: yy }),
      svg("text", { x: M.left - 6, y: yy + 4, "text-anchor": "end" }, (lossTop * (1 - i / 4)).toFixed(2)),
      svg("text", { x: W - M.right + 6, y: yy + 4 }, (1 - i / 4).toFixed(2)));
  }
  for (const epoch of xs) {
    plot.append(svg("text", { x: x(epoch), y: H - M.bottom + 16, "text-anchor": "middle" }, epoch));
  }
  plot.append(
    svg("line", { class: "axis", x1: M.left, x2: M.left, y1: M.top, y2: H - M.bottom }),
    svg("line", { class: "axis", x1: W - M.right, x2: W - M.right, y1: M.top, y2: H - M.bottom }),
    svg("line", { class: "axis", x1: M.left, x2: W - M.right, y1: H - M.bottom, y2: H - M.bottom }),
    svg("text", { x: (W - M.left - M.right) / 2 + M.left, y: H - 6, "text-anchor": "middle" }, "epoch"),
    svg("text", { x: 12, y: H / 2, transform: `rotate(-90 12 ${H / 2})`, "text-anchor": "middle" }, "loss"),
    svg("text", { x: W - 10, y: H / 2, transform: `rotate(90 ${W - 10} ${H / 2})`, "text-anchor": "middle" }, "accuracy"));

  for (const e of epochs) { // decisions other than WAIT, and rollbacks
    if (e.decision && e.decision !== "WAIT") {
      plot.append(svg("line", { class: "decision", x1: x(e.epoch), x2: x(e.epoch), y1: M.top, y2: H - M.bottom, stroke: "#a0620a", "stroke-dasharray": "2 3" }),
        svg("text", { class: "decision-label", x: x(e.epoch) + 3, y: M.top + 10 }, e.decision,
          svg("title", {}, e.decision_reason || "")));
    }
    if (e.rolled_back) {
      plot.append(svg("path", { class: "rollback", d: `M${x(e.epoch) - 6},${M.top} l12,0 l-6,10 z`, fill: "#c0392b" },
        svg("title", {}, `rolled back at epoch ${e.epoch}`)));
    }
  }
  for (const s of SERIES) {
    const points = epochs.filter((e) => e[s.key] !== null && e[s.key] !== undefined);
    if (points.length === 0) continue;
    const d = points.map((e, i) => `${i ? "L" : "M"}${x(e.epoch).toFixed(1)},${y[s.axis](e[s.key]).toFixed(1)}`).join(" ");
    plot.append(svg("path", { class: `series series-${s.key}`, d, fill: "none", stroke: s.color, "stroke-width": 2, "stroke-dasharray": s.dash }));
    for (const e of points) plot.append(svg("circle", { cx: x(e.epoch), cy: y[s.axis](e[s.key]), r: 2.5, fill: s.color }, svg("title", {}, `${s.key} ${e[s.key]}`)));
  }
  SERIES.forEach((s, i) => {
    plot.append(svg("line", { x1: M.left + 10 + i * 150, x2: M.left + 34 + i * 150, y1: 8, y2: 8, stroke: s.color, "stroke-width": 2, "stroke-dasharray": s.dash }),
      svg("text", { x: M.left + 38 + i * 150, y: 12 }, s.key.replace("_", " ")));
  });
  return plot;
}

function seedStrip(epochs) {
  const slots = [...new Set(epochs.flatMap((e) => (e.seeds || []).map((s) => s.slot)))].sort((a, b) => a - b);
  if (slots.length === 0) return el("p", {}, "This run has no seed slots.");
  const cell = (W - M.left - M.right) / epochs.length;
  const strip = svg("svg", { id: "seed-stages", viewBox: `0 0 ${W} ${slots.length * 18 + 24}`, width: W, height: slots.length * 18 + 24 });
  slots.forEach((slot, row) => {
    strip.append(svg("text", { x: M.left - 6, y: row * 18 + 13, "text-anchor": "end" }, `seed ${slot}`));
    epochs.forEach((e, i) => {
      const seed = (e.seeds || []).find((s) => s.slot === slot);
      if (!seed) return;
      strip.append(svg("rect", { class: "stage", x: M.left + i * cell, y: row * 18, width: cell - 1, height: 16, fill: STAGES[seed.stage] || "#999" },
        svg("title", {}, `epoch ${e.epoch}: ${seed.stage} (alpha ${seed.alpha})`)));
    });
  });
  Object.entries(STAGES).forEach(([stage, color], i) => {
    strip.append(svg("rect", { x: M.left + i * 84, y: slots.length * 18 + 8, width: 10, height: 10, fill: color }),
      svg("text", { x: M.left + 14 + i * 84, y: slots.length * 18 + 17 }, stage.toLowerCase()));
  });
  return strip;
}
