// The operator page: queue depths, dead-letter counts, and replay / purge per queue.
// Everything from the server is put into the page as text, never parsed as HTML.

import { api } from "./api.js";

const REFRESH_MS = 3000;
let timer = null;

function el(tag, text, props = {}) {
  const element = document.createElement(tag);
  if (text !== undefined && text !== null) element.textContent = String(text);
  for (const [name, value] of Object.entries(props)) {
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else element.setAttribute(name, String(value));
  }
  return element;
}

function row(cells) {
  const tr = el("tr");
  for (const cell of cells) {
    const td = el("td");
    td.append(cell instanceof Node ? cell : document.createTextNode(String(cell)));
    tr.append(td);
  }
  return tr;
}

async function showMessages(container, queue) {
  const listing = await api("GET", `/api/operators/dead-letters/${encodeURIComponent(queue)}`);
  container.replaceChildren(el("h3", `Dead letters in ${queue}`));
  if (!listing.messages.length) {
    container.append(el("p", "None.", { class: "hint" }));
    return;
  }
  const table = el("table", null, { class: "dead-letters" });
  const head = el("tr");
  for (const title of ["image", "stage", "received", "first failure", "last failure", "last error"])
    head.append(el("th", title));
  table.append(head);
  for (const m of listing.messages) {
    const error = m.last_error ? `${m.last_error.code}: ${m.last_error.message}` : "";
    table.append(
      row([m.image_id ?? "?", m.stage ?? "-", m.receive_count, m.first_failure_at ?? "?",
           m.last_failure_at ?? "?", error]),
    );
  }
  container.append(table);
}

async function act(view, queue, action) {
  const status = view.querySelector("#operators-status");
  try {
    if (action === "replay") {
      const report = await api(
        "POST", `/api/operators/dead-letters/${encodeURIComponent(queue)}/replay`, {},
      );
      const reran = Object.keys(report.reran).length;
      status.textContent = `${queue}: moved ${report.moved} message(s), re-ran ${reran} image(s)`;
    } else {
      if (!confirm(`Delete every dead letter of ${queue}? This cannot be undone.`)) return;
      const result = await api(
        "POST", `/api/operators/dead-letters/${encodeURIComponent(queue)}/purge`, { confirm: true },
      );
      status.textContent = `${queue}: purged about ${result.purged} message(s)`;
    }
  } catch (error) {
    status.textContent = error.message;
  }
  await refresh(view);
}

async function refresh(view) {
  const report = await api("GET", "/api/operators/dead-letters");
  const body = view.querySelector("#operators-queues");
  body.replaceChildren();
  for (const q of report.queues) {
    const actions = el("span");
    if (q.dead_letters > 0) {
      actions.append(
        el("button", "Show", { type: "button", onclick: () =>
          showMessages(view.querySelector("#operators-messages"), q.queue) }),
        el("button", "Replay", { type: "button", onclick: () => act(view, q.queue, "replay") }),
        el("button", "Purge", { type: "button", class: "danger",
                                onclick: () => act(view, q.queue, "purge") }),
      );
    }
    body.append(row([q.queue, q.visible, q.in_flight, q.dead_letters, actions]));
  }
}

/** Render the operator page into `view` and keep it fresh while the page is shown. */
export async function showOperators(view) {
  if (!view.dataset.ready) {
    const table = el("table", null, { class: "queues" });
    const head = el("tr");
    for (const title of ["queue", "waiting", "in flight", "dead letters", ""])
      head.append(el("th", title));
    const body = el("tbody", null, { id: "operators-queues" });
    table.append(head, body);
    view.replaceChildren(
      el("h2", "Operations"),
      el("p", "", { id: "operators-status", role: "status" }),
      table,
      el("section", null, { id: "operators-messages" }),
    );
    view.dataset.ready = "1";
  }
  await refresh(view);
  clearInterval(timer);
  timer = setInterval(() => {
    if (view.hidden) clearInterval(timer);
    else refresh(view).catch(() => {});
  }, REFRESH_MS);
}
