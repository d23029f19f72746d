// The agent registry (GET /v1/agents), a page at a time.

import { api, el, guarded, query, table } from "./common.js";

export function agentsView(root) {
  const body = el("div", { id: "agents" });
  const more = el("button", { id: "more-agents", hidden: true }, "More");
  let after = null;
  root.append(el("section", {}, el("h2", {}, "Agents"), body, more));

  async function load() {
    await guarded(async () => {
      const page = await api(`/v1/agents${query({ after, limit: 100 })}`);
      if (page.agents.length === 0 && !after) {
        body.replaceChildren(el("p", {}, "No agent has registered for this tenant."));
        return;
      }
      const columns = ["agent_id", "name", "status", "capabilities", "current_task", "last_seen_at", "version"]
        .map((name) => [name, (agent) => {
          const value = agent[name];
          return Array.isArray(value) ? value.join(", ") : value ?? "";
        }]);
      const link = (agent) => el("a", { href: `#streams?stream=agent-${agent.agent_id}` }, agent.agent_id);
      body.append(table([["agent_id", link], ...columns.slice(1)], page.agents,
        (agent) => ({ class: "agent", "data-agent": agent.agent_id })));
      after = page.cursor;
      more.hidden = !after;
    });
  }
  more.addEventListener("click", load);
  load();
}
