// The console's shell: the API key form and one view at a time, chosen by the URL's #hash
// (#view or #view?name=value, so a view can be linked to).

import { apiKey, say, setApiKey } from "./common.js";
import { agentsView } from "./agents.js";
import { auditView } from "./audit.js";
import { boardView } from "./board.js";
import { runsView } from "./runs.js";
import { streamsView, travelView } from "./streams.js";

const VIEWS = {
  board: (root, params) => boardView(root, params, {}),
  dead: (root, params) => boardView(root, params, { status: "dead_lettered" }),
  agents: agentsView,
  streams: streamsView,
  travel: travelView,
  runs: runsView,
  audit: auditView,
};

let leave = null; // stops the current view's live work (its SSE feed, its timers)

function route() {
  const [name, search] = (location.hash.slice(1) || "board").split("?");
  const view = VIEWS[name] ? name : "board";
  for (const link of document.querySelectorAll("#nav a")) {
    link.classList.toggle("active", link.dataset.view === view);
  }
  if (leave) leave();
  leave = null;
  const root = document.getElementById("view");
  root.replaceChildren();
  say("");
  if (!apiKey()) {
    say("Paste an API key (from `chronicle keys create ...`) above to begin.");
    return;
  }
  root.dataset.view = view;
  leave = VIEWS[view](root, new URLSearchParams(search || "")) || null;
}

document.getElementById("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = document.getElementById("api-key");
  if (input.value.trim()) setApiKey(input.value);
  input.value = "";
  document.getElementById("who").textContent = apiKey() ? "key set" : "";
  route();
});
document.getElementById("who").textContent = apiKey() ? "key set" : "";
window.addEventListener("hashchange", route);
route();
