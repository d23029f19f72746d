// What every view shares: the API key, calls to the API, building elements, the message line.

const KEY = "chronicle.key";

export function apiKey() {
  return localStorage.getItem(KEY) || "";
}

export function setApiKey(key) {
  localStorage.setItem(KEY, key.trim());
}

export class ApiError extends Error {
  constructor(status, body) {
    super(`${status}: ${body && body.error ? body.error : JSON.stringify(body)}`);
    this.status = status;
  }
}

// A call to the API as the key's tenant; JSON back (text for text/plain answers).
export async function api(path, { method = "GET", body, signal, raw = false } = {}) {
  const headers = { Authorization: `Bearer ${apiKey()}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method, headers, signal, body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (raw) {
    if (!response.ok) throw new ApiError(response.status, await response.text());
    return response;
  }
  const type = response.headers.get("content-type") || "";
  const parsed = type.includes("json") ? await response.json() : await response.text();
  if (!response.ok) throw new ApiError(response.status, parsed);
  return parsed;
}

export function query(params) {
  const q = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") q.append(name, value);
  }
  const text = q.toString();
  return text ? `?${text}` : "";
}

// el("td", {class: "mono"}, "text", child...): an element with attributes and children.
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name in node && typeof value !== "string") node[name] = value;
    else node.setAttribute(name, value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function json(value) {
  return el("pre", {}, JSON.stringify(value, null, 2));
}

export function say(text, error = false) {
  const line = document.getElementById("message");
  line.textContent = text;
  line.className = error ? "error" : "";
}

// Runs an action, showing its error on the message line instead of losing it.
export async function guarded(action) {
  try {
    return await action();
  } catch (error) {
    if (error.name !== "AbortError") say(String(error.message || error), true);
    return undefined;
  }
}

export function table(columns, rows, rowAttrs = () => ({})) {
  return el("table", {},
    el("thead", {}, el("tr", {}, columns.map(([title]) => el("th", {}, title)))),
    el("tbody", {}, rows.map((row) => el("tr", rowAttrs(row), columns.map(([, cell]) => el("td", {}, cell(row)))))));
}

export function age(iso) {
  if (!iso) return "";
  const seconds = (Date.now() - Date.parse(iso)) / 1000;
  return `${seconds.toFixed(1)} s ago`;
}

// Server-sent events over fetch (EventSource cannot send the Authorization header). Calls
// onEvent({id, event, data}) for each event, and resumes with Last-Event-ID after a drop,
// until signal aborts.
export async function readEvents(path, onEvent, signal) {
  let lastId = null;
  while (!signal.aborted) {
    try {
      const headers = { Authorization: `Bearer ${apiKey()}`, Accept: "text/event-stream" };
      if (lastId !== null) headers["Last-Event-ID"] = lastId;
      const response = await fetch(path, { headers, signal });
      if (!response.ok) throw new ApiError(response.status, await response.json());
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const message = parseEvent(block);
          if (message.id !== null) lastId = message.id;
          if (message.data !== null) onEvent(message);
        }
      }
    } catch (error) {
      if (signal.aborted) return;
      say(`live feed: ${error.message}; reconnecting`, true);
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

function parseEvent(block) {
  const message = { id: null, event: "message", data: null };
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "id") message.id = value;
    else if (field === "event") message.event = value;
    else if (field === "data") message.data = message.data === null ? value : `${message.data}\n${value}`;
  }
  return message;
}
