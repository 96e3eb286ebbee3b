// The imgproc web client: sign in, albums, a live gallery with uploads, and a detail view.
// Every string that comes from a user or a file (album names, file names, EXIF text, errors) is
// put into the page as text (textContent / attributes), never parsed as HTML.

import { ApiError, api, followAlbum, session, uploadToS3 } from "./api.js";
import { showOperators } from "./operators.js";
import { placeholderDataUrl } from "./thumbhash.js";

const $ = (id) => document.getElementById(id);

/** Make an element: h("li", {className: "x"}, "text", child). Strings become text nodes. */
function h(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "className" || name === "textContent" || name === "hidden") element[name] = value;
    else if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else element.setAttribute(name, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

const STAGES = [
  ["extract", "Extracting"],
  ["tag", "Tagging"],
  ["thumbnail", "Thumbnailing"],
];
const BLANK_PIXEL = "data:image/gif;base64,R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7";
const STATUS_RANK = { UPLOADING: 0, PROCESSING: 1, PROCESSED: 2, REJECTED: 2, FAILED: 2 };
const CARD_LABELS = 4; // a card shows the most confident few; the detail view shows them all

const state = {
  user: null,
  albums: [],
  album: null,
  images: new Map(), // image_id -> view
  order: [], // image ids, newest first
  progress: new Map(), // image_id -> upload fraction while uploading
  nextCursor: null,
  follow: null, // AbortController of the album's event stream
  placeholders: new Map(),
};

// ---------- formatting ----------

function formatDate(value) {
  if (!value) return null;
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? String(value) : date.toLocaleString();
}

function formatBytes(bytes) {
  if (typeof bytes !== "number") return null;
  const units = ["B", "KB", "MB", "GB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(unit ? 1 : 0)} ${units[unit]}`;
}

function statusText(image) {
  switch (image.status) {
    case "PROCESSED":
      return "Processed";
    case "REJECTED":
      return "Rejected";
    case "FAILED":
      return "Failed";
    case "PROCESSING": {
      const stages = image.stages || {};
      const running = STAGES.filter(([s]) => stages[s]?.started_at && !stages[s]?.finished_at);
      if (running.length) return running.map(([, label]) => label).join(" + ");
      const done = STAGES.filter(([s]) => stages[s]?.finished_at);
      return done.length ? "Processing" : "Started";
    }
    case "UPLOADING":
      return state.progress.has(image.image_id) ? "Uploading" : "Uploaded";
    default:
      return image.status || "Unknown";
  }
}

function cameraName(exif) {
  const make = (exif.make || "").trim();
  const model = (exif.model || "").trim();
  // Many cameras repeat the make in the model ("Canon" + "Canon EOS R6").
  if (make && model.toLowerCase().startsWith(make.toLowerCase())) return model;
  return [make, model].filter(Boolean).join(" ") || null;
}

function mapLink(gps) {
  const lat = Number(gps.latitude);
  const lon = Number(gps.longitude);
  if (!Number.isFinite(lat) || !Number.isFinite(lon)) return null;
  const text = `${lat.toFixed(5)}, ${lon.toFixed(5)}`;
  const href = `https://www.openstreetmap.org/?mlat=${lat}&mlon=${lon}#map=15/${lat}/${lon}`;
  return h("a", { href, target: "_blank", rel: "noopener noreferrer" }, text);
}

function httpUrl(url) {
  return typeof url === "string" && /^https?:\/\//i.test(url) ? url : null;
}

function rendition(image, preferred) {
  const renditions = image.thumbnails || [];
  return renditions.find((r) => r.name === preferred) || renditions[0] || null;
}

function metaRows(image, { full = false } = {}) {
  const meta = image.metadata || {};
  const exif = meta.exif || {};
  const rows = [
    ["Uploaded", formatDate(image.uploaded_at)],
    ["Taken", formatDate(meta.taken_at)],
    ["Camera", cameraName(exif)],
    ["Location", meta.gps ? mapLink(meta.gps) : null],
    ["Dimensions", meta.width ? `${meta.width} × ${meta.height}` : null],
    ["Size", formatBytes(meta.bytes ?? image.size)],
  ];
  if (full) {
    rows.push(
      ["Format", meta.format],
      ["Mode", meta.mode],
      ["Lens", exif.lens],
      ["Exposure", exif.exposure_time ? `${exif.exposure_time} s` : null],
      ["Aperture", exif.f_number ? `f/${exif.f_number}` : null],
      ["ISO", exif.iso],
      ["Focal length", exif.focal_length ? `${exif.focal_length} mm` : null],
      ["Orientation", exif.orientation],
      ["Altitude", meta.gps?.altitude != null ? `${meta.gps.altitude} m` : null],
      ["SHA-256", meta.sha256],
      ["Execution", image.execution_arn],
      ["Finished", formatDate(image.finished_at)],
    );
  }
  const list = h("dl", { className: "meta" });
  for (const [term, value] of rows) {
    if (value === null || value === undefined || value === "") continue;
    list.append(h("dt", {}, term), h("dd", {}, value));
  }
  return list;
}

/**
 * The labels, most confident first; `limit` keeps the first few (a gallery card's). With
 * `boxes` (the detail view's preview), a label that has instances can be hovered or focused to
 * outline them.
 */
function labelList(image, { limit = Infinity, boxes = null } = {}) {
  const tags = [...(image.tags || [])]
    .sort((a, b) => Number(b.confidence) - Number(a.confidence))
    .slice(0, limit);
  if (!tags.length) return null;
  return h(
    "ul",
    { className: "labels", "aria-label": "Labels" },
    tags.map((tag) => {
      const text = `${tag.name} ${Math.round(Number(tag.confidence))}%`;
      const found = boxes ? boxesOf(tag) : [];
      if (!found.length) return h("li", {}, text);
      const item = h("li", { className: "has-boxes", tabindex: 0 }, text);
      boxes.attach(item, found);
      return item;
    }),
  );
}

const fraction = (value) => Math.min(Math.max(Number(value), 0), 1);

/** A label's boxes as {left, top, width, height} fractions that stay inside the image. */
function boxesOf(tag) {
  const boxes = [];
  for (const instance of Array.isArray(tag.instances) ? tag.instances : []) {
    const box = instance?.bounding_box;
    const sides = box ? [box.left, box.top, box.width, box.height] : [];
    if (sides.length === 0 || !sides.every((side) => Number.isFinite(Number(side)))) continue;
    const left = fraction(box.left);
    const top = fraction(box.top);
    const width = Math.min(fraction(box.width), 1 - left);
    const height = Math.min(fraction(box.height), 1 - top);
    if (width > 0 && height > 0) boxes.push({ left, top, width, height });
  }
  return boxes;
}

/**
 * The preview with an overlay that outlines one label's boxes: the hovered label's, else the
 * focused one's. Boxes are fractions of the upright image and the preview is upright, so they
 * are placed in % of a frame that wraps the image exactly. The overlay is decoration
 * (aria-hidden): the label's text already says what is there.
 */
function previewWithBoxes(url, alt) {
  const overlay = h("div", { className: "boxes", "aria-hidden": "true" });
  const frame = h(
    "div",
    { className: "preview-frame" },
    h("img", { src: url, alt, className: "preview" }),
    overlay,
  );
  const items = [];
  let hovered = null;
  let focused = null;
  const paint = () => {
    const shown = hovered ?? focused;
    overlay.replaceChildren(
      ...(shown?.boxes ?? []).map((box) => {
        const outline = h("div", { className: "box" });
        outline.style.left = `${box.left * 100}%`;
        outline.style.top = `${box.top * 100}%`;
        outline.style.width = `${box.width * 100}%`;
        outline.style.height = `${box.height * 100}%`;
        return outline;
      }),
    );
    for (const item of items) item.classList.toggle("active", item === shown?.item);
  };
  const attach = (item, boxes) => {
    const entry = { item, boxes };
    items.push(item);
    item.addEventListener("mouseenter", () => ((hovered = entry), paint()));
    item.addEventListener("mouseleave", () => ((hovered = null), paint()));
    item.addEventListener("focus", () => ((focused = entry), paint()));
    item.addEventListener("blur", () => ((focused = null), paint()));
  };
  return { frame, attach };
}

function stageList(image) {
  const stages = image.stages || {};
  return h(
    "ol",
    { className: "stages", "aria-label": "Stages" },
    STAGES.map(([stage]) => {
      const progress = stages[stage];
      let mark = "pending";
      let text = stage;
      if (progress?.error) {
        mark = "error";
      } else if (progress?.finished_at) {
        mark = "done";
        if (typeof progress.duration_ms === "number") text += ` ${progress.duration_ms} ms`;
      } else if (progress?.started_at) {
        mark = "running";
      }
      return h("li", { className: `stage ${mark}` }, text);
    }),
  );
}

// ---------- the gallery ----------

function placeholderFor(image) {
  if (!image.placeholder) return null;
  if (!state.placeholders.has(image.image_id)) {
    state.placeholders.set(image.image_id, placeholderDataUrl(image.placeholder));
  }
  return state.placeholders.get(image.image_id);
}

function thumbnail(image) {
  const name = image.file_name || image.image_id;
  const img = h("img", { alt: name, className: "thumb", loading: "lazy", decoding: "async" });
  const thumb = rendition(image, "thumbnail");
  const placeholder = placeholderFor(image);
  const url = thumb ? httpUrl(thumb.url) : null;
  if (placeholder) img.style.backgroundImage = `url("${placeholder}")`;
  // Until there is a rendition, a blank pixel keeps the image (and its alt text) in the page.
  img.src = url || placeholder || BLANK_PIXEL;
  if (!url && !placeholder) img.classList.add("empty");
  return img;
}

function card(image) {
  const status = statusText(image);
  const item = h("li", {
    className: `photo status-${(image.status || "unknown").toLowerCase()}`,
    "data-image-id": image.image_id,
  });
  const fraction = state.progress.get(image.image_id);
  const detailsButton = h(
    "button",
    { type: "button", className: "details", onclick: () => openDetail(image.image_id) },
    "Details",
  );
  detailsButton.setAttribute("aria-label", `Details of ${image.file_name || image.image_id}`);
  item.append(
    h("figure", {}, thumbnail(image)),
    h(
      "div",
      { className: "body" },
      h("p", { className: "file-name" }, image.file_name || image.image_id),
      h("p", { className: "status" }, h("span", { className: "badge" }, status)),
      fraction !== undefined
        ? h("progress", {
            max: 1,
            value: fraction,
            "aria-label": `Upload of ${image.file_name || image.image_id}`,
          })
        : null,
      image.status === "PROCESSING" || image.status === "UPLOADING"
        ? [
            image.execution_arn ? h("p", { className: "arn" }, image.execution_arn) : null,
            image.execution_arn ? stageList(image) : null,
          ]
        : null,
      image.error
        ? h(
            "p",
            { className: "reason" },
            image.status === "FAILED" && image.error.stage ? `${image.error.stage}: ` : "",
            image.error.message || image.error.code,
          )
        : null,
      labelList(image, { limit: CARD_LABELS }),
      metaRows(image),
      detailsButton,
    ),
  );
  return item;
}

function renderGallery() {
  const list = $("gallery");
  const focusedId = document.activeElement?.closest?.("li.photo")?.dataset.imageId;
  list.replaceChildren(...state.order.map((id) => card(state.images.get(id))));
  if (focusedId) list.querySelector(`li[data-image-id="${CSS.escape(focusedId)}"] .details`)?.focus();
  $("load-more").hidden = !state.nextCursor;
}

function renderImage(id) {
  const image = state.images.get(id);
  const existing = $("gallery").querySelector(`li[data-image-id="${CSS.escape(id)}"]`);
  if (!image) {
    existing?.remove();
    return;
  }
  const hadFocus = existing?.contains(document.activeElement);
  const fresh = card(image);
  if (existing) existing.replaceWith(fresh);
  else renderGallery();
  if (hadFocus) fresh.querySelector(".details")?.focus();
  if ($("detail").open && $("detail").dataset.imageId === id) renderDetail(image, false);
}

/** Merge a view into the gallery; an older status never overwrites a newer one. */
function upsert(image, { front = true } = {}) {
  if (!state.album || image.album_id !== state.album.album_id) return;
  const known = state.images.get(image.image_id);
  if (known && (STATUS_RANK[known.status] ?? 0) > (STATUS_RANK[image.status] ?? 0)) return;
  state.images.set(image.image_id, image);
  if (!known) {
    if (front) state.order.unshift(image.image_id);
    else state.order.push(image.image_id);
  }
  renderImage(image.image_id);
}

async function loadImages(reset) {
  const album = state.album;
  const params = new URLSearchParams({ limit: "50" });
  if (!reset && state.nextCursor) params.set("cursor", state.nextCursor);
  const page = await api(
    "GET",
    `/api/albums/${encodeURIComponent(album.album_id)}/images?${params}`,
  );
  if (state.album !== album) return;
  if (reset) {
    // Keep what the stream already told us; it is at least as new as the list.
    const streamed = new Map(state.images);
    state.images = new Map();
    state.order = [];
    for (const image of page.items) {
      const newer = streamed.get(image.image_id);
      const pick =
        newer && (STATUS_RANK[newer.status] ?? 0) >= (STATUS_RANK[image.status] ?? 0) ? newer : image;
      state.images.set(image.image_id, pick);
      state.order.push(image.image_id);
    }
    for (const [id, image] of streamed) {
      if (!state.images.has(id)) {
        state.images.set(id, image);
        state.order.unshift(id);
      }
    }
  } else {
    for (const image of page.items) upsert(image, { front: false });
  }
  state.nextCursor = page.next_cursor;
  renderGallery();
}

// ---------- uploads ----------

function guessContentType(file) {
  if (file.type) return file.type;
  const ext = file.name.split(".").pop().toLowerCase();
  return { jpg: "image/jpeg", jpeg: "image/jpeg", png: "image/png", gif: "image/gif" }[ext] || "";
}

// The API refuses control characters in a file name and a name that is only spaces; a file
// named so on disk still uploads, under the name it shows. Cut by code point, as the API
// counts (slicing UTF-16 could split a pair).
function displayName(fileName) {
  const shown = fileName.replace(/[\x00-\x1f\x7f-\x9f]/g, "").trim();
  return Array.from(shown).slice(0, 255).join("").trim() || "photo";
}

async function uploadFiles(files) {
  const album = state.album;
  $("gallery-error").textContent = "";
  await Promise.all(
    [...files].map(async (file) => {
      const entry = h("li", {}, file.name);
      const contentType = guessContentType(file);
      if (!contentType.startsWith("image/")) {
        entry.append(h("span", { className: "error" }, " — not an image, skipped"));
        $("upload-list").append(entry);
        return;
      }
      let grant;
      try {
        grant = await api("POST", `/api/albums/${encodeURIComponent(album.album_id)}/uploads`, {
          file_name: displayName(file.name),
          content_type: contentType,
          size: file.size || undefined,
        });
      } catch (error) {
        entry.append(h("span", { className: "error" }, ` — ${error.message}`));
        $("upload-list").append(entry);
        return;
      }
      state.progress.set(grant.image_id, 0);
      upsert(grant.image);
      let lastPaint = 0;
      try {
        await uploadToS3(grant, file, (fraction) => {
          state.progress.set(grant.image_id, fraction);
          const now = performance.now();
          if (fraction === 1 || now - lastPaint > 100) {
            lastPaint = now;
            const bar = $("gallery").querySelector(
              `li[data-image-id="${CSS.escape(grant.image_id)}"] progress`,
            );
            if (bar) bar.value = fraction;
          }
        });
        state.progress.delete(grant.image_id);
        renderImage(grant.image_id);
      } catch (error) {
        state.progress.delete(grant.image_id);
        const image = state.images.get(grant.image_id);
        if (image) {
          image.error = { code: "upload_failed", message: error.message };
          renderImage(grant.image_id);
        }
      }
    }),
  );
}

// ---------- detail view ----------

async function openDetail(id) {
  const image = state.images.get(id);
  if (!image) return;
  const dialog = $("detail");
  dialog.dataset.imageId = id;
  renderDetail(image, true);
  if (!dialog.open) dialog.showModal();
}

function renderDetail(image, loadTimeline) {
  $("detail-title").textContent = image.file_name || image.image_id;
  const body = $("detail-body");
  const preview = rendition(image, "preview");
  const url = preview ? httpUrl(preview.url) : null;
  const timeline = h("section", { className: "timeline", "aria-label": "Execution timeline" });
  const old = body.querySelector(".timeline");
  if (old && !loadTimeline) timeline.replaceChildren(...old.childNodes);
  const boxes = url ? previewWithBoxes(url, image.file_name || image.image_id) : null;
  const labels = labelList(image, { boxes });
  // A live update re-renders the view: the label that had focus keeps it (and its boxes).
  const focusedLabel = [...body.querySelectorAll(".labels li")].indexOf(document.activeElement);
  // replaceChildren would show a null or undefined as the text "null": leave those out.
  const parts = [
    boxes?.frame,
    h("p", { className: "status" }, h("span", { className: "badge" }, statusText(image))),
    image.error
      ? h("p", { className: "reason" }, `${image.error.code}: ${image.error.message || ""}`)
      : null,
    labels,
    metaRows(image, { full: true }),
    timeline,
    h(
      "button",
      { type: "button", className: "danger", onclick: () => deleteImage(image.image_id) },
      "Delete photo",
    ),
  ];
  body.replaceChildren(...parts.filter(Boolean));
  if (focusedLabel >= 0) labels?.querySelectorAll("li")[focusedLabel]?.focus();
  if (loadTimeline || image.status !== "PROCESSING") loadExecution(image, timeline);
}

async function loadExecution(image, container) {
  if (!image.execution_arn) {
    container.replaceChildren(h("p", { className: "hint" }, "No execution yet."));
    return;
  }
  try {
    const execution = await api("GET", `/api/images/${encodeURIComponent(image.image_id)}/execution`);
    const rows = execution.states.map((s) =>
      h(
        "tr",
        { className: `outcome-${s.outcome}` },
        h("td", {}, s.name),
        h("td", {}, formatDate(s.entered_at) || ""),
        h("td", {}, s.duration_ms !== null && s.duration_ms !== undefined ? `${s.duration_ms} ms` : ""),
        h("td", {}, s.outcome, s.error ? ` (${s.error})` : ""),
      ),
    );
    container.replaceChildren(
      h("h3", {}, "Execution"),
      h("p", { className: "arn" }, `${execution.status} · ${execution.execution_arn}`),
      h(
        "table",
        {},
        h("thead", {}, h("tr", {}, ["State", "Started", "Took", "Outcome"].map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", {}, rows),
      ),
    );
  } catch (error) {
    container.replaceChildren(h("p", { className: "hint" }, `Execution unavailable: ${error.message}`));
  }
}

async function deleteImage(id) {
  if (!confirm("Delete this photo?")) return;
  await api("DELETE", `/api/images/${encodeURIComponent(id)}`);
  $("detail").close();
  removeImage(id);
}

function removeImage(id) {
  state.images.delete(id);
  state.order = state.order.filter((known) => known !== id);
  renderImage(id);
}

// ---------- albums ----------

function renderAlbums() {
  const current = state.album?.album_id;
  $("album-list").replaceChildren(
    ...state.albums.map((album) =>
      h(
        "li",
        {},
        h(
          "a",
          {
            href: `#/albums/${encodeURIComponent(album.album_id)}`,
            "aria-current": album.album_id === current ? "page" : null,
          },
          album.name,
        ),
      ),
    ),
  );
}

async function loadAlbums() {
  state.albums = (await api("GET", "/api/albums")).items;
  renderAlbums();
}

function closeAlbum() {
  state.follow?.abort();
  state.follow = null;
  state.album = null;
  state.images = new Map();
  state.order = [];
  state.progress.clear();
  state.nextCursor = null;
  $("upload-list").replaceChildren();
  $("gallery").replaceChildren();
}

async function openAlbum(albumId) {
  if (state.album?.album_id === albumId) return;
  closeAlbum();
  let album = state.albums.find((a) => a.album_id === albumId);
  try {
    album ??= await api("GET", `/api/albums/${encodeURIComponent(albumId)}`);
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) {
      location.hash = "#/";
      return;
    }
    throw error;
  }
  state.album = album;
  $("no-album").hidden = true;
  $("album-view").hidden = false;
  $("album-title").textContent = album.name;
  renderAlbums();
  const follow = new AbortController();
  state.follow = follow;
  // Subscribe first, then list: nothing that happens in between is missed.
  followAlbum(album.album_id, follow.signal, {
    onReady: () => loadImages(true).catch(showGalleryError),
    onEvent: (kind, data) => {
      if (kind === "image") upsert(data);
      else if (kind === "deleted") removeImage(data.image_id);
    },
    onState: (text) => {
      if (state.follow === follow) $("live").textContent = text === "live" ? "● live" : text;
    },
  });
}

function showGalleryError(error) {
  $("gallery-error").textContent = error.message;
}

// ---------- routing and sign-in ----------

async function route() {
  if (!session.token) {
    closeAlbum();
    $("app-view").hidden = true;
    $("who").hidden = true;
    $("sign-in-view").hidden = false;
    $("username").focus();
    return;
  }
  if (!state.user) {
    try {
      state.user = await api("GET", "/api/auth/me");
      await loadAlbums();
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) {
        session.token = null;
        return route();
      }
      throw error;
    }
  }
  $("sign-in-view").hidden = true;
  $("app-view").hidden = false;
  $("who").hidden = false;
  $("who-name").textContent = state.user.name;
  const operators = location.hash === "#/operators";
  $("operators-view").hidden = !operators;
  if (operators) {
    closeAlbum();
    $("album-view").hidden = true;
    $("no-album").hidden = true;
    await showOperators($("operators-view"));
    return;
  }
  const match = location.hash.match(/^#\/albums\/([A-Za-z0-9_-]+)/);
  if (match) {
    await openAlbum(match[1]);
  } else {
    closeAlbum();
    $("album-view").hidden = true;
    $("no-album").hidden = false;
    renderAlbums();
  }
}

function wire() {
  $("sign-in-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("sign-in-error").textContent = "";
    try {
      const token = await api("POST", "/api/auth/sign-in", { username: $("username").value.trim() });
      session.token = token.access_token;
      state.user = null;
      await route();
    } catch (error) {
      $("sign-in-error").textContent = error.message;
    }
  });

  $("sign-out").addEventListener("click", () => {
    session.token = null;
    state.user = null;
    state.albums = [];
    location.hash = "#/";
    route();
  });

  $("album-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("album-error").textContent = "";
    try {
      const album = await api("POST", "/api/albums", { name: $("album-name").value });
      $("album-name").value = "";
      state.albums.unshift(album);
      renderAlbums();
      location.hash = `#/albums/${encodeURIComponent(album.album_id)}`;
    } catch (error) {
      $("album-error").textContent = error.message;
    }
  });

  $("delete-album").addEventListener("click", async () => {
    const album = state.album;
    if (!album || !confirm("Delete this album and all its photos?")) return;
    await api("DELETE", `/api/albums/${encodeURIComponent(album.album_id)}`);
    state.albums = state.albums.filter((a) => a.album_id !== album.album_id);
    location.hash = "#/";
  });

  $("file-input").addEventListener("change", (event) => {
    const files = [...event.target.files];
    event.target.value = "";
    uploadFiles(files);
  });

  const zone = $("drop-zone");
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    if (event.dataTransfer?.files?.length) uploadFiles(event.dataTransfer.files);
  });

  $("load-more").addEventListener("click", () => loadImages(false).catch(showGalleryError));
  $("detail-close").addEventListener("click", () => $("detail").close());
  window.addEventListener("hashchange", () => route().catch(showGalleryError));
}

wire();
route().catch(showGalleryError);
