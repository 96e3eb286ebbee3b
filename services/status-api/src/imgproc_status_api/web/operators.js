// The operator page: queue depths, dead-letter counts, each queue's dead letters (id, receives,
// first and last receive, last error, body) with replay / delete of one or a selection, replay
// all / purge per queue; and
// re-tagging PROCESSED images (all, or one album) with the current model, with its progress.
// Everything from the server is put into the page as text, never parsed as HTML.

import { api } from "./api.js";

const REFRESH_MS = 3000;
const RETAG_POLL_MS = 1000;
let timer = null;
let retagTimer = null;

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

function queuePath(queue, suffix = "") {
  return `/api/operators/dead-letters/${encodeURIComponent(queue)}${suffix}`;
}

function describeError(error) {
  return error ? `${error.code}: ${error.message}` : "not recorded";
}

// One dead letter: what it is, why it failed, its body (pretty, cut at 4 KB), and its actions.
function letterRow(view, queue, m) {
  const pick = el("input", null, { type: "checkbox", "aria-label": `Select ${m.message_id}`,
                                   "data-message-id": m.message_id });
  const body = el("details");
  const size = m.body_truncated ? `${m.body_size} bytes, first 4 KB shown` : `${m.body_size} bytes`;
  body.append(el("summary", `Body (${size})`), el("pre", m.body_preview, { class: "body" }));
  const actions = el("span");
  actions.append(
    el("button", "Replay", { type: "button", "aria-label": `Replay ${m.message_id}`,
                             onclick: () => actOn(view, queue, "replay", [m.message_id]) }),
    el("button", "Delete", { type: "button", class: "danger",
                             "aria-label": `Delete ${m.message_id}`,
                             onclick: () => actOn(view, queue, "delete", [m.message_id]) }),
  );
  return row([pick, m.message_id, m.image_id ?? "-", m.stage ?? "-", m.receive_count,
              m.first_receive_at ?? "?", m.last_receive_at ?? "?", describeError(m.last_error),
              body, actions]);
}

async function showMessages(view, queue) {
  const container = view.querySelector("#operators-messages");
  // Looking is not a receive: the list comes from the server's mirror of the queue.
  const listing = await api("GET", queuePath(queue));
  container.replaceChildren(el("h3", `Dead letters in ${queue}`));
  container.dataset.queue = queue;
  if (!listing.messages.length) {
    container.append(el("p", "None.", { class: "hint" }));
    return;
  }
  const table = el("table", null, { class: "dead-letters" });
  const head = el("tr");
  for (const title of ["", "message", "image", "stage", "receives", "first receive",
                       "last receive", "last error", "body", ""])
    head.append(el("th", title));
  table.append(head);
  for (const m of listing.messages) table.append(letterRow(view, queue, m));
  const selected = () => [...table.querySelectorAll("input[type=checkbox]:checked")]
    .map((box) => box.dataset.messageId);
  const bar = el("p");
  bar.append(
    el("button", "Replay selected", { type: "button",
                                      onclick: () => actOn(view, queue, "replay", selected()) }),
    el("button", "Delete selected", { type: "button", class: "danger",
                                      onclick: () => actOn(view, queue, "delete", selected()) }),
  );
  container.append(bar, table);
}

// Replay or delete the messages named (one, or a selection).
async function actOn(view, queue, action, messageIds) {
  const status = view.querySelector("#operators-status");
  if (!messageIds.length) {
    status.textContent = "Select one or more messages first.";
    return;
  }
  try {
    if (action === "replay") {
      const report = await api("POST", queuePath(queue, "/replay"), { message_ids: messageIds });
      const reran = Object.keys(report.reran).length;
      status.textContent = `${queue}: replayed ${report.moved} message(s), re-ran ${reran} image(s)`;
    } else {
      if (!confirm(`Delete ${messageIds.length} dead letter(s) of ${queue} for good?`)) return;
      const report = await api("POST", queuePath(queue, "/delete"), { message_ids: messageIds });
      status.textContent = `${queue}: deleted ${report.deleted.length} message(s)`;
    }
  } catch (error) {
    status.textContent = error.message;
  }
  await Promise.all([refresh(view), showMessages(view, queue)]);
}

async function act(view, queue, action) {
  const status = view.querySelector("#operators-status");
  try {
    if (action === "replay") {
      if (!confirm(`Replay every dead letter of ${queue}?`)) return;
      const report = await api("POST", queuePath(queue, "/replay"), {});
      const reran = Object.keys(report.reran).length;
      status.textContent = `${queue}: moved ${report.moved} message(s), re-ran ${reran} image(s)`;
    } else {
      if (!confirm(`Delete every dead letter of ${queue}? This cannot be undone.`)) return;
      const result = await api("POST", queuePath(queue, "/purge"), { confirm: true });
      status.textContent = `${queue}: purged about ${result.purged} message(s)`;
    }
  } catch (error) {
    status.textContent = error.message;
  }
  await refresh(view);
  const shown = view.querySelector("#operators-messages");
  if (shown.dataset.queue === queue) await showMessages(view, queue);
}

async function refresh(view) {
  const report = await api("GET", "/api/operators/dead-letters");
  const body = view.querySelector("#operators-queues");
  body.replaceChildren();
  for (const q of report.queues) {
    const actions = el("span");
    if (q.dead_letters > 0) {
      actions.append(
        el("button", "Show", { type: "button", onclick: () => showMessages(view, q.queue) }),
        el("button", "Replay all", { type: "button",
                                     onclick: () => act(view, q.queue, "replay") }),
        el("button", "Purge", { type: "button", class: "danger",
                                onclick: () => act(view, q.queue, "purge") }),
      );
    }
    body.append(row([q.queue, q.visible, q.in_flight, q.dead_letters, actions]));
  }
}

async function fillAlbums(select) {
  const listing = await api("GET", "/api/albums");
  select.replaceChildren(el("option", "All images", { value: "" }));
  for (const album of listing.items) {
    select.append(el("option", `Album: ${album.name}`, { value: album.album_id }));
  }
}

function describeRetag(request, progress) {
  const expected = request.to_start + request.already_started;
  let text = `Re-tag ${request.request_id} (${request.scope}): ${progress.finished}/${expected} ` +
    `finished, ${progress.retagged} re-tagged`;
  if (request.already_done) text += `, ${request.already_done} already done`;
  if (progress.skipped_count) text += `, ${progress.skipped_count} skipped`;
  if (progress.failed_count) text += `, ${progress.failed_count} failed`;
  if (request.skipped_count) text += `; ${request.skipped_count} not PROCESSED`;
  return text;
}

async function followRetag(view, request) {
  const status = view.querySelector("#retag-progress");
  const bar = view.querySelector("#retag-bar");
  const expected = request.to_start + request.already_started;
  bar.max = Math.max(expected, 1);
  clearInterval(retagTimer);
  const poll = async () => {
    const progress = await api("GET", request.progress);
    bar.value = expected ? progress.finished : 1;
    status.textContent = describeRetag(request, progress);
    const done = !progress.starting && progress.running === 0 && progress.executions >= expected;
    if (done || view.hidden) clearInterval(retagTimer);
  };
  await poll();
  retagTimer = setInterval(() => poll().catch((error) => {
    status.textContent = error.message;
    clearInterval(retagTimer);
  }), RETAG_POLL_MS);
}

async function startRetag(view) {
  const album = view.querySelector("#retag-scope").value;
  const what = album ? "this album's" : "every";
  if (!confirm(`Re-tag ${what} processed images with the current model?`)) return;
  const status = view.querySelector("#retag-progress");
  try {
    const request = await api("POST", "/api/operators/retag", album ? { album_id: album } : {});
    await followRetag(view, request);
  } catch (error) {
    status.textContent = error.message;
  }
}

function retagSection(view) {
  const select = el("select", null, { id: "retag-scope", "aria-label": "Images to re-tag" });
  select.append(el("option", "All images", { value: "" }));
  fillAlbums(select).catch(() => {});
  const section = el("section", null, { id: "operators-retag" });
  section.append(
    el("h3", "Re-tag"),
    el("p", "Labels PROCESSED images again with the current model; nothing else changes.",
       { class: "hint" }),
    select,
    el("button", "Re-tag", { type: "button", id: "retag-start", onclick: () => startRetag(view) }),
    el("progress", null, { id: "retag-bar", value: "0", max: "1" }),
    el("p", "", { id: "retag-progress", "aria-live": "polite" }),
  );
  return section;
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
      retagSection(view),
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
