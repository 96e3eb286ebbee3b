// The imgproc web client: sign in, albums, a live gallery with uploads, a detail view, search
// across albums and the duplicates view.
// Every string that comes from a user or a file (album names, file names, EXIF text, errors) is
// put into the page as text (textContent / attributes), never parsed as HTML.

import {
  ApiError,
  api,
  followAlbum,
  loadAuthConfig,
  session,
  signInWithCognito,
  signOut,
  uploadToS3,
} from "./api.js";
import { CognitoError } from "./cognito_srp.js";
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
const STATUS_RANK = { UPLOADING: 0, PROCESSING: 1, PROCESSED: 2, REJECTED: 2, FAILED: 2, DUPLICATE: 2 };
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
  opened: new Map(), // image_id -> view fetched to open its details (an original shown elsewhere)
  selected: new Set(), // image ids checked in the album's gallery, for deleting many
};

// ---------- formatting ----------

function formatDate(value, { short = false } = {}) {
  if (!value) return null;
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  // A card is narrow: the day is enough there (the details and the viewer give the time).
  return short ? date.toLocaleDateString(undefined, { dateStyle: "medium" }) : date.toLocaleString();
}

/** "50 MB", "1.2 MB", "830 KB" (units of 1024, as the limits are set). */
function formatBytes(bytes) {
  if (typeof bytes !== "number" || !Number.isFinite(bytes)) return null;
  const units = ["bytes", "KB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  if (unit === 0) return `${value} ${value === 1 ? "byte" : "bytes"}`;
  const shown = value >= 100 ? value.toFixed(0) : value.toFixed(1).replace(/\.0$/, "");
  return `${shown} ${units[unit]}`;
}

// What each request field is, for validation errors said in words (the API's own message
// names the field and the rule, as a pattern: never shown).
const FIELD_RULES = {
  username: "A username is 1 to 64 letters, digits, “-” or “_”, starting with a letter or digit.",
  name: "An album name is 1 to 100 characters, without control characters, and not only spaces.",
  file_name: "The file name is too long or has characters that cannot be used.",
  content_type: "The file is not an image type imgproc takes.",
  size: "The file is empty.",
};

/** A failure in plain words: what happened, and what to do when there is something to do. */
function plainError(error) {
  if (error instanceof CognitoError) {
    // Cognito's own words ("Incorrect username or password."), or ours for a lost connection.
    return error.status === 0
      ? "The sign-in service could not be reached. Check the connection and try again."
      : sentence(error.message);
  }
  if (!(error instanceof ApiError)) {
    return error?.message ? `Something went wrong (${error.message}).` : "Something went wrong.";
  }
  const code = error.code || "";
  if (code === "network_error") return "The server could not be reached. Check the connection and try again.";
  if (code === "validation_error") {
    const field = /^\s*([a-z_]+)\s*:/.exec(error.message || "")?.[1];
    return FIELD_RULES[field] ?? "Some of what was entered is not valid.";
  }
  if (code === "too_large" || code === "storage_entitytoolarge") {
    const limit = Number(/(\d+)\s*bytes/.exec(error.message || "")?.[1]);
    return Number.isFinite(limit) && limit > 0
      ? `The file is larger than the ${formatBytes(limit)} upload limit.`
      : "The file is larger than the upload limit.";
  }
  if (code === "token_expired" || code === "token_revoked" || error.status === 401) {
    return "Your session has ended. Sign in again.";
  }
  if (code.endsWith("_not_found") || error.status === 404) {
    return "It no longer exists (it may have been deleted elsewhere).";
  }
  if (code.startsWith("storage_")) {
    return code === "storage_accessdenied"
      ? "The storage refused the file (the upload link expired or the file changed). Try again."
      : "The storage refused the file. Try again.";
  }
  if (error.status >= 500) return "The server had a problem. Try again in a moment.";
  if (code === "not_uploaded" || code === "original_missing" || code === "sign_in_unavailable") {
    return sentence(error.message);
  }
  return sentence(error.message) || "The request was refused.";
}

/** "the photo has not finished uploading" -> "The photo has not finished uploading." */
function sentence(text) {
  const trimmed = String(text || "").trim();
  if (!trimmed) return "";
  const capital = trimmed[0].toUpperCase() + trimmed.slice(1);
  return /[.!?]$/.test(capital) ? capital : `${capital}.`;
}

const STAGE_WORDS = { extract: "reading the file", tag: "labelling", thumbnail: "making thumbnails" };

/** Why a photo was rejected or failed, in words: the record's error code says which kind. */
function reasonText(image) {
  const error = image.error;
  if (!error) return null;
  const code = String(error.code || "");
  const detail = sentence(error.message);
  const kinds = {
    "ImageProc.TooLarge": "Too large",
    "ImageProc.CorruptImage": "Damaged or incomplete file",
    "ImageProc.UnsupportedFormat": "Not a supported format",
    NotSupportedImageType: "Not a supported format",
  };
  if (code === "upload_failed") return `Upload failed: ${detail || "try again."}`;
  if (kinds[code]) return detail ? `${kinds[code]}: ${detail}` : `${kinds[code]}.`;
  const stage = STAGE_WORDS[error.stage] ?? null;
  const what = stage ? `Failed while ${stage}` : "Failed";
  if (code === "States.Timeout") return `${what}: it took too long.`;
  return detail ? `${what}: ${detail}` : `${what}.`;
}

function statusText(image) {
  switch (image.status) {
    case "PROCESSED":
      return "Processed";
    case "REJECTED":
      return "Rejected";
    case "FAILED":
      return "Failed";
    case "DUPLICATE":
      return "Duplicate";
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
    ["Uploaded", formatDate(image.uploaded_at, { short: !full })],
    ["Taken", formatDate(meta.taken_at, { short: !full })],
    ["Camera", cameraName(exif)],
    ["Location", meta.gps ? mapLink(meta.gps) : null],
    ["Dimensions", meta.width ? `${meta.width} × ${meta.height}` : null],
    ["Size", formatBytes(meta.bytes ?? image.size ?? undefined)],
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

/** A DUPLICATE's link to its original (which may live in another album). */
function duplicateOf(image) {
  const originalId = image.status === "DUPLICATE" ? image.duplicate_of : null;
  if (!originalId) return null;
  const original = findImage(originalId);
  if (!original) nameOriginal(originalId);
  return h(
    "p",
    { className: "duplicate-of" },
    h(
      "button",
      {
        type: "button",
        className: "link",
        "data-original-id": originalId,
        onclick: () => openDetail(originalId),
      },
      `Duplicate of ${original?.file_name || "the original"}`,
    ),
  );
}

const naming = new Set(); // originals fetched (or being fetched) for their names, once each

/** Fetch an original this page has not listed, then name it in its duplicates' links. */
async function nameOriginal(id) {
  if (naming.has(id)) return;
  naming.add(id);
  try {
    const original = await api("GET", `/api/images/${encodeURIComponent(id)}`);
    state.opened.set(id, original);
    if (!original.file_name) return;
    for (const link of document.querySelectorAll(`button[data-original-id="${CSS.escape(id)}"]`)) {
      link.textContent = `Duplicate of ${original.file_name}`;
    }
  } catch {
    // The link still opens it (and says why if it cannot).
  }
}

/** The thumbnail as a link that opens the photo in the viewer (the image keeps its name). */
function viewerLink(image) {
  const name = image.file_name || image.image_id;
  return h(
    "a",
    {
      href: "#",
      className: "open",
      "aria-label": `View ${name}`,
      onclick: (event) => {
        event.preventDefault();
        openViewer(image.image_id, event.currentTarget);
      },
    },
    thumbnail(image),
  );
}

function selectBox(image) {
  const name = image.file_name || image.image_id;
  const box = h("input", {
    type: "checkbox",
    className: "select",
    "aria-label": `Select ${name}`,
    onchange: (event) => {
      if (event.currentTarget.checked) state.selected.add(image.image_id);
      else state.selected.delete(image.image_id);
      event.currentTarget.closest("li.photo")?.classList.toggle("selected", event.currentTarget.checked);
      renderSelection();
    },
  });
  box.checked = state.selected.has(image.image_id);
  return box;
}

/**
 * A photo's card; `actions` (a node) go before its Details button; `selectable` (the album's
 * gallery) adds its checkbox for deleting many.
 */
function card(image, actions = null, { selectable = false } = {}) {
  const status = statusText(image);
  const item = h("li", {
    className: `photo status-${(image.status || "unknown").toLowerCase()}${
      selectable && state.selected.has(image.image_id) ? " selected" : ""
    }`,
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
    h("figure", {}, viewerLink(image), selectable ? selectBox(image) : null),
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
      image.error ? h("p", { className: "reason" }, reasonText(image)) : null,
      duplicateOf(image),
      labelList(image, { limit: CARD_LABELS }),
      metaRows(image),
      actions,
      detailsButton,
    ),
  );
  return item;
}

// The album's order: by upload time (as the API lists it) or by capture time, sorted here
// over the photos loaded so far ("Load more" brings older uploads, placed by the same order).
// Photos without a capture time go after those with one.
const SORTS = {
  "uploaded-desc": (image) => [image.uploaded_at || "", -1],
  "uploaded-asc": (image) => [image.uploaded_at || "", 1],
  "taken-desc": (image) => [image.metadata?.taken_at || "", -1],
  "taken-asc": (image) => [image.metadata?.taken_at || "", 1],
};

function sortedOrder() {
  const key = SORTS[$("sort").value] ?? SORTS["uploaded-desc"];
  const position = new Map(state.order.map((id, index) => [id, index]));
  return [...state.order].sort((a, b) => {
    const [first, direction] = key(state.images.get(a));
    const [second] = key(state.images.get(b));
    if (!first !== !second) return first ? -1 : 1;
    if (first !== second) return (first < second ? -1 : 1) * direction;
    return position.get(a) - position.get(b);
  });
}

// A card's controls: a re-rendered card gives focus back to the one that had it.
const FOCUSABLE_PARTS = ["select", "open", "details"];

function renderGallery() {
  const list = $("gallery");
  const focused = document.activeElement;
  const focusedId = focused?.closest?.("li.photo")?.dataset.imageId;
  const focusedPart = FOCUSABLE_PARTS.find((part) => focused?.classList?.contains(part));
  list.replaceChildren(
    ...sortedOrder().map((id) => card(state.images.get(id), null, { selectable: true })),
  );
  if (focusedId) {
    const again = list.querySelector(`li[data-image-id="${CSS.escape(focusedId)}"]`);
    again?.querySelector(`.${focusedPart ?? "details"}`)?.focus();
  }
  $("load-more").hidden = !state.nextCursor;
  renderSelection();
}

function renderImage(id) {
  const image = state.images.get(id);
  const existing = $("gallery").querySelector(`li[data-image-id="${CSS.escape(id)}"]`);
  if (!image) {
    existing?.remove();
    return;
  }
  const focused = existing?.contains(document.activeElement) ? document.activeElement : null;
  const fresh = card(image, null, { selectable: true });
  if (existing) existing.replaceWith(fresh);
  else renderGallery();
  if (focused) {
    const part = FOCUSABLE_PARTS.find((name) => focused.classList.contains(name)) ?? "details";
    fresh.querySelector(`.${part}`)?.focus();
  }
  if ($("detail").open && $("detail").dataset.imageId === id) renderDetail(image, false);
  if ($("viewer").open && $("viewer").dataset.imageId === id) renderViewer();
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

// Browsers often give a HEIC/HEIF, an MPO (a camera's JPEG with a second frame) and on some
// systems AVIF no type, or a generic one: the extension decides then, else the first bytes,
// as the extractor itself tells formats by content (it has the last word: anything it cannot
// read is rejected with the reason).
const IMAGE_TYPES = {
  jpg: "image/jpeg", jpeg: "image/jpeg", jpe: "image/jpeg", jfif: "image/jpeg",
  mpo: "image/jpeg", png: "image/png", gif: "image/gif",
  heic: "image/heic", heif: "image/heif", hif: "image/heif", webp: "image/webp", avif: "image/avif",
};
const SUPPORTED_WORDS = "JPEG (MPO included), PNG, HEIC/HEIF, WebP or AVIF";

async function guessContentType(file) {
  if (file.type.startsWith("image/")) return file.type;
  const ext = file.name.includes(".") ? file.name.split(".").pop().toLowerCase() : "";
  if (IMAGE_TYPES[ext]) return IMAGE_TYPES[ext];
  return sniffImageType(new Uint8Array(await file.slice(0, 16).arrayBuffer()));
}

function sniffImageType(head) {
  const text = (from, to) => String.fromCharCode(...head.slice(from, to));
  if (head[0] === 0xff && head[1] === 0xd8 && head[2] === 0xff) return "image/jpeg";
  if (text(0, 8) === "\x89PNG\r\n\x1a\n") return "image/png";
  if (text(0, 4) === "RIFF" && text(8, 12) === "WEBP") return "image/webp";
  if (text(4, 8) === "ftyp") {
    const brand = text(8, 12);
    if (brand.startsWith("avi")) return "image/avif";
    if (["heic", "heix", "heim", "heis", "mif1", "msf1", "hevc"].includes(brand)) return "image/heif";
  }
  return null;
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
      let contentType = null;
      try {
        contentType = await guessContentType(file);
      } catch {
        contentType = null; // unreadable: said below
      }
      if (!contentType) {
        entry.append(
          h("span", { className: "error" }, ` — skipped: not a photo imgproc can read (${SUPPORTED_WORDS}).`),
        );
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
        entry.append(h("span", { className: "error" }, ` — not uploaded: ${plainError(error)}`));
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
          image.error = { code: "upload_failed", message: plainError(error) };
          renderImage(grant.image_id);
        }
      }
    }),
  );
}

// ---------- detail view ----------

/** An image this page already has: in the album, the search results or the duplicates. */
function findImage(id) {
  return (
    state.images.get(id) ?? search.images.get(id) ?? duplicates.images.get(id) ?? state.opened.get(id)
  );
}

async function openDetail(id) {
  let image = findImage(id);
  if (!image) {
    try {
      image = await api("GET", `/api/images/${encodeURIComponent(id)}`);
    } catch (error) {
      showError(error);
      return;
    }
    state.opened.set(id, image);
  }
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
    image.error ? h("p", { className: "reason" }, reasonText(image)) : null,
    image.status === "FAILED"
      ? h("button", { type: "button", onclick: () => retryImage(image.image_id) }, "Retry")
      : null,
    labels,
    image.metadata?.gps
      ? h("button", { type: "button", onclick: () => searchNear(image) }, "Photos taken near here")
      : null,
    metaRows(image, { full: true }),
    timeline,
    h(
      "div",
      { className: "actions" },
      h(
        "button",
        {
          type: "button",
          className: "download",
          onclick: (event) => downloadOriginal(image, event.currentTarget.closest("dialog")),
        },
        "Download original",
      ),
      h(
        "button",
        { type: "button", className: "danger", onclick: () => deleteImage(image.image_id) },
        "Delete photo",
      ),
    ),
    h("p", { className: "error action-error", role: "alert" }),
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
        h("td", {}, s.outcome ?? "", s.error ? ` (${s.error})` : ""),
      ),
    );
    container.replaceChildren(
      h("h3", {}, "Execution"),
      h(
        "p",
        { className: "arn" },
        [execution.status, execution.execution_arn].filter(Boolean).join(" · "),
      ),
      h(
        "table",
        {},
        h("thead", {}, h("tr", {}, ["State", "Started", "Took", "Outcome"].map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", {}, rows),
      ),
    );
  } catch (error) {
    container.replaceChildren(
      h("p", { className: "hint" }, `The execution could not be shown. ${plainError(error)}`),
    );
  }
}

// A FAILED photo runs through the workflow again (a new execution); live updates follow it.
async function retryImage(id) {
  const line = $("detail").querySelector(".action-error");
  if (line) line.textContent = "";
  let image;
  try {
    image = await api("POST", `/api/images/${encodeURIComponent(id)}/retry`);
  } catch (error) {
    const text = `The photo could not be retried. ${plainError(error)}`;
    if (line) line.textContent = text;
    else showError(new Error(text));
    return;
  }
  // Set, not upsert: upsert never moves a finished photo back to PROCESSING.
  if (state.images.has(id)) state.images.set(id, image);
  if (state.opened.has(id)) state.opened.set(id, image);
  renderImage(id);
  if ($("detail").dataset.imageId === id) renderDetail(image, true);
}

/** Save the original: the API answers a short-lived link that downloads it under its name. */
async function downloadOriginal(image, where) {
  const line = where?.querySelector(".action-error");
  if (line) line.textContent = "";
  try {
    const original = await api("GET", `/api/images/${encodeURIComponent(image.image_id)}/original`);
    const url = httpUrl(original.url);
    if (!url) throw new Error("no link");
    const link = h("a", { href: url, download: original.file_name, hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
  } catch (error) {
    const text = `The original could not be downloaded. ${plainError(error)}`;
    if (line) line.textContent = text;
    else showError(new Error(text));
  }
}

async function deleteImage(id) {
  if (!confirm("Delete this photo?")) return;
  const line = $("detail").querySelector(".action-error");
  if (line) line.textContent = "";
  try {
    await api("DELETE", `/api/images/${encodeURIComponent(id)}`);
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 404)) {
      if (line) line.textContent = `The photo could not be deleted. ${plainError(error)}`;
      return;
    }
  }
  $("detail").close();
  forgetImage(id);
}

/** A deleted photo leaves every list of this page (and the viewer moves on). */
function forgetImage(id) {
  state.selected.delete(id);
  removeImage(id);
  state.opened.delete(id);
  if (search.images.delete(id)) {
    search.order = search.order.filter((known) => known !== id);
    renderSearch();
  }
  if (duplicates.images.has(id)) showDuplicates();
}

function removeImage(id) {
  state.images.delete(id);
  state.order = state.order.filter((known) => known !== id);
  renderImage(id);
}

// ---------- the viewer ----------

// The photo large (its preview rendition) over the page: the photos of the list it was opened
// from, in that list's order (the album as sorted, search results, a duplicate group), with
// the arrow keys or Previous/Next; Escape or Close returns focus to where it was opened from.
// A modal <dialog>: the rest of the page is inert, so focus stays inside it.
const viewer = { ids: [], index: 0, opener: null };

function listOf(element) {
  const list = element?.closest?.("ul.gallery");
  return list ? [...list.querySelectorAll(":scope > li.photo")].map((li) => li.dataset.imageId) : [];
}

function openViewer(id, opener) {
  const ids = listOf(opener);
  viewer.ids = ids.length ? ids : [id];
  viewer.index = Math.max(viewer.ids.indexOf(id), 0);
  viewer.opener = opener;
  const dialog = $("viewer");
  renderViewer();
  if (!dialog.open) dialog.showModal();
  $("viewer-close").focus();
}

function renderViewer() {
  // Photos deleted meanwhile drop out of the list.
  const current = viewer.ids[viewer.index];
  const known = viewer.ids.filter((id) => findImage(id));
  if (!known.length) {
    closeViewer();
    return;
  }
  const at = known.indexOf(current);
  viewer.index = at >= 0 ? at : Math.min(viewer.index, known.length - 1);
  viewer.ids = known;
  const id = viewer.ids[viewer.index];
  const image = findImage(id);
  const name = image.file_name || image.image_id;
  const dialog = $("viewer");
  dialog.dataset.imageId = id;
  $("viewer-title").textContent = name;
  $("viewer-position").textContent = `${viewer.index + 1} of ${viewer.ids.length}`;
  const large = rendition(image, "preview") ?? rendition(image, "thumbnail");
  const url = large ? httpUrl(large.url) : null;
  const placeholder = placeholderFor(image);
  const stage = $("viewer-stage");
  if (url || placeholder) {
    const img = h("img", { alt: name, className: "viewer-image" });
    if (placeholder) img.style.backgroundImage = `url("${placeholder}")`;
    img.src = url || placeholder;
    stage.replaceChildren(img);
  } else {
    stage.replaceChildren(
      h("p", { className: "viewer-empty" }, image.error ? reasonText(image) : statusText(image)),
    );
  }
  const facts = [statusText(image), formatDate(image.metadata?.taken_at), cameraName(image.metadata?.exif || {})];
  $("viewer-facts").textContent = facts.filter(Boolean).join(" · ");
  $("viewer-reason").textContent = image.error ? reasonText(image) : "";
  $("viewer-prev").disabled = viewer.index === 0;
  $("viewer-next").disabled = viewer.index === viewer.ids.length - 1;
  $("viewer-error").textContent = "";
}

/** Tab and Shift+Tab go round the dialog's controls instead of leaving for the browser's. */
function keepFocusIn(dialog, event) {
  const controls = [...dialog.querySelectorAll("button, a[href], input, select, [tabindex='0']")].filter(
    (element) => !element.disabled && element.getClientRects().length > 0,
  );
  if (!controls.length) return;
  const first = controls[0];
  const last = controls[controls.length - 1];
  const inside = dialog.contains(document.activeElement);
  if (event.shiftKey && (document.activeElement === first || !inside)) {
    event.preventDefault();
    last.focus();
  } else if (!event.shiftKey && (document.activeElement === last || !inside)) {
    event.preventDefault();
    first.focus();
  }
}

function stepViewer(delta) {
  const next = viewer.index + delta;
  if (next < 0 || next >= viewer.ids.length) return;
  viewer.index = next;
  renderViewer();
}

function wireViewer() {
  const dialog = $("viewer");
  $("viewer-prev").addEventListener("click", () => stepViewer(-1));
  $("viewer-next").addEventListener("click", () => stepViewer(1));
  $("viewer-close").addEventListener("click", closeViewer);
  $("viewer-download").addEventListener("click", () => {
    const image = findImage(dialog.dataset.imageId);
    if (image) downloadOriginal(image, dialog);
  });
  $("viewer-details").addEventListener("click", () => {
    const id = dialog.dataset.imageId;
    closeViewer();
    openDetail(id);
  });
  dialog.addEventListener("keydown", (event) => {
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    if (event.key === "Tab") {
      keepFocusIn(dialog, event);
    } else if (event.key === "ArrowLeft" || event.key === "ArrowRight") {
      event.preventDefault();
      stepViewer(event.key === "ArrowLeft" ? -1 : 1);
    } else if (event.key === "Home" || event.key === "End") {
      event.preventDefault();
      stepViewer(event.key === "Home" ? -viewer.index : viewer.ids.length - 1 - viewer.index);
    }
  });
  // A click on the backdrop (the dialog itself, outside its content) closes it.
  dialog.addEventListener("click", (event) => {
    if (event.target === dialog) closeViewer();
  });
  // Escape: closed here, so that focus goes where closeViewer puts it.
  dialog.addEventListener("cancel", (event) => {
    event.preventDefault();
    closeViewer();
  });
}

/** Close the viewer and focus the photo shown last (its card), else where it was opened. */
function closeViewer() {
  const dialog = $("viewer");
  if (!dialog.open) return;
  const id = dialog.dataset.imageId;
  const list = viewer.opener?.isConnected
    ? viewer.opener.closest("ul.gallery")
    : document.querySelector(`ul.gallery li[data-image-id="${CSS.escape(id || "")}"]`)?.parentElement;
  dialog.close();
  const shown = id && list ? list.querySelector(`li[data-image-id="${CSS.escape(id)}"] .open`) : null;
  (shown ?? (viewer.opener?.isConnected ? viewer.opener : null))?.focus();
}

// ---------- deleting many ----------

function renderSelection() {
  // Only photos still listed count (one deleted elsewhere leaves the selection).
  for (const id of [...state.selected]) if (!state.images.has(id)) state.selected.delete(id);
  const count = state.selected.size;
  $("selection-bar").hidden = count === 0;
  $("selection-count").textContent = `${count} selected`;
  $("delete-selected").textContent = count === 1 ? "Delete 1 photo" : `Delete ${count} photos`;
}

async function deleteSelected() {
  const ids = [...state.selected];
  if (!ids.length) return;
  const what = ids.length === 1 ? "this photo" : `these ${ids.length} photos`;
  if (!confirm(`Delete ${what}? This cannot be undone.`)) return;
  const button = $("delete-selected");
  button.disabled = true;
  $("selection-error").textContent = "";
  const failed = [];
  // A few at a time: the API deletes objects and records for each.
  const queue = [...ids];
  const worker = async () => {
    for (let id = queue.shift(); id !== undefined; id = queue.shift()) {
      const image = state.images.get(id);
      try {
        await api("DELETE", `/api/images/${encodeURIComponent(id)}`);
        forgetImage(id);
      } catch (error) {
        if (error instanceof ApiError && error.status === 404) forgetImage(id);
        else failed.push(`“${image?.file_name || id}”: ${plainError(error)}`);
      }
    }
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
  button.disabled = false;
  renderSelection();
  if (failed.length) {
    $("selection-error").replaceChildren(
      h(
        "span",
        {},
        `${failed.length === 1 ? "1 photo" : `${failed.length} photos`} could not be deleted ` +
          "(still selected; try again):",
      ),
      h("ul", {}, failed.map((line) => h("li", {}, line))),
    );
  }
}

// ---------- albums ----------

/** The search bar's album choice: every album, the choice kept while the album exists. */
function renderAlbumFilter() {
  const select = $("search-album");
  const chosen = select.value;
  select.replaceChildren(
    h("option", { value: "" }, "All albums"),
    ...state.albums.map((album) => h("option", { value: album.album_id }, album.name)),
  );
  select.value = state.albums.some((a) => a.album_id === chosen) ? chosen : "";
}

function renderAlbums() {
  renderAlbumFilter();
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
  state.selected.clear();
  state.nextCursor = null;
  $("upload-list").replaceChildren();
  $("selection-error").textContent = "";
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
  showBrowsePane();
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
  $("gallery-error").textContent = plainError(error);
}

/** An error in the pane on screen, where the user will read it. */
function showError(error) {
  const pane = PANES.find((id) => !$(id).hidden);
  const line = {
    "search-view": "search-error",
    "duplicates-view": "duplicates-error",
  }[pane];
  const text = error instanceof ApiError ? plainError(error) : error.message;
  $(line ?? "gallery-error").textContent = text;
  if (!line && pane !== "album-view") alert(text);
}

// ---------- search across albums ----------

const SUGGESTION_LIMIT = 8;
const TYPING_DEBOUNCE_MS = 200;
const FILTER_DEBOUNCE_MS = 350;
const SEARCH_PAGE = "50";

const search = {
  labels: [], // chosen label filters, as the index names them
  images: new Map(), // image_id -> view, of the results shown
  order: [],
  nextCursor: null,
  runs: 0, // counts searches, so that a late answer to an older one is dropped
  suggestionRuns: 0,
  options: [], // the suggestions shown: [{name, count}]
  active: -1, // the highlighted suggestion's index
};

/** Debounce: the call runs once the calls stop for `ms`. */
function debounced(fn, ms) {
  let timer = null;
  const call = (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
  call.cancel = () => clearTimeout(timer);
  return call;
}

/**
 * The place filter as typed ("47.37, 8.54, 10": latitude, longitude, kilometres), or null when
 * empty or not yet a place; the field says which.
 */
function nearFilter() {
  const field = $("search-near");
  const text = field.value.trim();
  const numbers = text.split(/[\s,]+/).filter(Boolean).map(Number);
  const [lat, lon, km] = numbers;
  const valid =
    numbers.length === 3 &&
    numbers.every(Number.isFinite) &&
    Math.abs(lat) <= 90 &&
    Math.abs(lon) <= 180 &&
    km > 0 &&
    km <= 20000;
  field.setAttribute("aria-invalid", String(Boolean(text) && !valid));
  return valid ? { lat, lon, km } : null;
}

/** The filters the user set (labels, date range, camera, place) as query parameters. */
function searchFilters() {
  const params = new URLSearchParams();
  for (const label of search.labels) params.append("label", label);
  const from = $("search-from").value;
  const to = $("search-to").value;
  const camera = $("search-camera").value.trim();
  const near = nearFilter();
  const album = $("search-album").value;
  if (from) params.set("from", from);
  if (album) params.set("album", album);
  if (to) params.set("to", to);
  if (camera) params.set("camera", camera);
  if (near) params.set("near", `${near.lat},${near.lon},${near.km}`);
  return params;
}

/** Search the photos taken within `km` of where `image` was taken (its details' button). */
function searchNear(image, km = 10) {
  const gps = image.metadata?.gps;
  const [lat, lon] = [gps.latitude, gps.longitude].map((v) => Number(v).toFixed(4));
  $("search-near").value = `${lat}, ${lon}, ${km}`;
  $("detail").close();
  runSearch(true);
}

const searching = () => [...searchFilters().keys()].length > 0;

function listText(words) {
  if (words.length < 2) return words.join("");
  return `${words.slice(0, -1).join(", ")} and ${words[words.length - 1]}`;
}

/** What was searched, in words: "with Dog, from 2024-07-01, camera “Pentax”". */
function describeSearch() {
  const parts = [];
  if (search.labels.length) parts.push(`with ${listText(search.labels)}`);
  const from = $("search-from").value;
  const to = $("search-to").value;
  const camera = $("search-camera").value.trim();
  if (from) parts.push(`from ${from}`);
  if (to) parts.push(`to ${to}`);
  if (camera) parts.push(`camera “${camera}”`);
  const near = nearFilter();
  if (near) parts.push(`within ${near.km} km of ${near.lat}, ${near.lon}`);
  const album = $("search-album");
  if (album.value) parts.push(`in the album “${album.selectedOptions[0].textContent}”`);
  return parts.join(", ");
}

const PANES = ["no-album", "album-view", "search-view", "operators-view", "duplicates-view"];

function showPane(pane) {
  for (const id of PANES) $(id).hidden = id !== pane;
  $("search-bar").hidden = pane === "operators-view" || pane === "duplicates-view";
}

/** The album (or the hint to choose one), unless a search is on: then its results. */
function showBrowsePane() {
  if (!browsing()) return;
  showPane(searching() ? "search-view" : state.album ? "album-view" : "no-album");
  $("search-clear").hidden = !searching() && !$("search-input").value;
}

const browsing = () => location.hash !== "#/operators" && location.hash !== "#/duplicates";

async function runSearch(reset) {
  const filters = searchFilters();
  if (![...filters.keys()].length) {
    search.runs++;
    search.images = new Map();
    search.order = [];
    search.nextCursor = null;
    $("search-results").replaceChildren();
    showBrowsePane();
    return;
  }
  if (reset) {
    search.runs++;
    $("search-summary").textContent = "Searching…";
    $("search-summary").classList.remove("empty-state");
  } else {
    if (!search.nextCursor) return;
    filters.set("cursor", search.nextCursor);
  }
  const run = search.runs;
  filters.set("limit", SEARCH_PAGE);
  $("search-error").textContent = "";
  $("search-more").disabled = true;
  showBrowsePane();
  let page;
  const items = [];
  try {
    // One request reads at most a page beyond what it returns, so a narrow search can answer
    // a short page with a cursor: follow it until the page is full or the cursor ends.
    for (;;) {
      page = await api("GET", `/api/images?${filters}`);
      if (run !== search.runs) return;
      items.push(...page.items);
      if (!page.next_cursor || items.length >= Number(SEARCH_PAGE)) break;
      filters.set("cursor", page.next_cursor);
    }
  } catch (error) {
    if (run === search.runs) {
      $("search-summary").textContent = "";
      $("search-error").textContent = `The search failed. ${plainError(error)}`;
      $("search-more").disabled = false;
    }
    return;
  }
  if (run !== search.runs) return;
  if (reset) {
    search.images = new Map();
    search.order = [];
  }
  for (const image of items) {
    if (!search.images.has(image.image_id)) search.order.push(image.image_id);
    search.images.set(image.image_id, image);
  }
  search.nextCursor = page.next_cursor;
  renderSearch();
}

function renderSearch() {
  const description = describeSearch();
  const summary = $("search-summary");
  const found = search.order.length;
  summary.textContent = found ? `Photos ${description}` : `No photos ${description}`;
  summary.classList.toggle("empty-state", !found);
  $("search-results").replaceChildren(...search.order.map((id) => card(search.images.get(id))));
  $("search-more").hidden = !search.nextCursor;
  $("search-more").disabled = false;
}

function renderChips() {
  $("search-chips").replaceChildren(
    ...search.labels.map((label) =>
      h(
        "li",
        { className: "chip" },
        h("span", {}, label),
        h(
          "button",
          {
            type: "button",
            "aria-label": `Remove ${label}`,
            title: `Remove ${label}`,
            onclick: () => removeLabel(label),
          },
          "×",
        ),
      ),
    ),
  );
}

function addLabel(name) {
  if (!search.labels.includes(name)) search.labels.push(name);
  const input = $("search-input");
  input.value = "";
  closeSuggestions();
  renderChips();
  input.focus();
  runSearch(true);
}

function removeLabel(name) {
  search.labels = search.labels.filter((label) => label !== name);
  renderChips();
  $("search-input").focus();
  runSearch(true);
}

function clearSearch() {
  suggestLater.cancel();
  searchLater.cancel();
  search.labels = [];
  for (const id of ["search-input", "search-from", "search-to", "search-camera", "search-near"]) {
    $(id).value = "";
  }
  $("search-near").removeAttribute("aria-invalid");
  $("search-album").value = "";
  closeSuggestions();
  renderChips();
  runSearch(true);
}

// The suggestions: an ARIA combobox whose listbox holds the labels that start with what is
// typed, with their counts under the other filters. Focus stays in the input; the highlighted
// option is aria-activedescendant.

async function suggest({ all = false } = {}) {
  const text = $("search-input").value.trim();
  const run = ++search.suggestionRuns;
  if (!text && !all) {
    closeSuggestions();
    return;
  }
  const params = searchFilters();
  if (text) params.set("prefix", text);
  params.set("limit", String(SUGGESTION_LIMIT));
  let answer;
  try {
    answer = await api("GET", `/api/labels?${params}`);
  } catch (error) {
    if (run === search.suggestionRuns) {
      closeSuggestions();
      $("search-status").textContent = `No suggestions: ${error.message}`;
    }
    return;
  }
  if (run !== search.suggestionRuns) return;
  search.options = (answer.labels || []).filter((option) => !search.labels.includes(option.name));
  search.active = -1;
  if (!search.options.length) {
    closeSuggestions();
    $("search-status").textContent = text ? `No labels start with “${text}”.` : "No labels yet.";
    return;
  }
  renderSuggestions();
  const count = search.options.length;
  $("search-status").textContent = `${count} ${count === 1 ? "suggestion" : "suggestions"}.`;
}

function renderSuggestions() {
  const list = $("search-suggestions");
  list.replaceChildren(
    ...search.options.map((option, index) =>
      h(
        "li",
        {
          id: `search-option-${index}`,
          role: "option",
          "aria-selected": "false",
          // Keep focus in the input when an option is clicked.
          onmousedown: (event) => event.preventDefault(),
          onclick: () => addLabel(option.name),
        },
        h("span", { className: "name" }, option.name),
        h(
          "span",
          { className: "count" },
          String(option.count),
          h("span", { className: "visually-hidden" }, option.count === 1 ? " photo" : " photos"),
        ),
      ),
    ),
  );
  list.hidden = false;
  $("search-input").setAttribute("aria-expanded", "true");
  highlight(search.active);
}

function highlight(index) {
  search.active = index;
  const input = $("search-input");
  const options = $("search-suggestions").querySelectorAll("[role=option]");
  options.forEach((option, at) => {
    option.setAttribute("aria-selected", at === index ? "true" : "false");
    option.classList.toggle("active", at === index);
  });
  if (index >= 0 && options[index]) {
    input.setAttribute("aria-activedescendant", options[index].id);
    options[index].scrollIntoView({ block: "nearest" });
  } else {
    input.removeAttribute("aria-activedescendant");
  }
}

function closeSuggestions() {
  search.suggestionRuns++;
  search.options = [];
  search.active = -1;
  const list = $("search-suggestions");
  list.hidden = true;
  list.replaceChildren();
  const input = $("search-input");
  input.setAttribute("aria-expanded", "false");
  input.removeAttribute("aria-activedescendant");
}

/** Enter without a highlighted option: the label typed, spelled as the index spells it. */
async function chooseTyped() {
  const text = $("search-input").value.trim();
  if (!text) return;
  suggestLater.cancel();
  const want = text.toLowerCase();
  let known = search.options.find((option) => option.name.toLowerCase() === want);
  if (!known) {
    try {
      const params = new URLSearchParams({ prefix: text, limit: "20" });
      const answer = await api("GET", `/api/labels?${params}`);
      known = (answer.labels || []).find((option) => option.name.toLowerCase() === want);
    } catch {
      known = null; // searched as typed: the results (or their absence) say the rest
    }
  }
  addLabel(known?.name ?? text);
}

function onSearchKey(event) {
  const open = !$("search-suggestions").hidden;
  const count = search.options.length;
  switch (event.key) {
    case "ArrowDown":
      event.preventDefault();
      if (!open) suggest({ all: true });
      else highlight(search.active < 0 ? 0 : (search.active + 1) % count);
      break;
    case "ArrowUp":
      if (!open) return;
      event.preventDefault();
      highlight(search.active <= 0 ? count - 1 : search.active - 1);
      break;
    case "Home":
    case "End":
      if (!open || search.active < 0) return;
      event.preventDefault();
      highlight(event.key === "Home" ? 0 : count - 1);
      break;
    case "Enter":
      event.preventDefault();
      if (open && search.active >= 0) addLabel(search.options[search.active].name);
      else chooseTyped();
      break;
    case "Escape":
      if (open) {
        event.preventDefault();
        suggestLater.cancel();
        closeSuggestions();
      } else if (event.target.value) {
        event.preventDefault();
        event.target.value = "";
        showBrowsePane();
      }
      break;
    case "Backspace":
      if (!event.target.value && search.labels.length) {
        removeLabel(search.labels[search.labels.length - 1]);
      }
      break;
    default:
  }
}

const suggestLater = debounced(() => suggest(), TYPING_DEBOUNCE_MS);
const searchLater = debounced(() => runSearch(true), FILTER_DEBOUNCE_MS);

// ---------- duplicates ----------

const duplicates = {
  images: new Map(), // image_id -> view, of the groups shown
  runs: 0,
};

function plural(count, one, many) {
  return `${count} ${count === 1 ? one : many}`;
}

async function showDuplicates() {
  const run = ++duplicates.runs;
  $("duplicates-error").textContent = "";
  $("duplicates-summary").textContent = "Looking for duplicates…";
  let answer;
  try {
    answer = await api("GET", "/api/duplicates");
  } catch (error) {
    if (run === duplicates.runs) {
      $("duplicates-summary").textContent = "";
      $("duplicates-error").textContent = `The duplicates could not be listed. ${plainError(error)}`;
    }
    return false;
  }
  if (run !== duplicates.runs) return false;
  const groups = answer.groups || [];
  duplicates.images = new Map();
  for (const group of groups) {
    for (const image of group.images) duplicates.images.set(image.image_id, image);
  }
  $("duplicates-summary").textContent = groups.length
    ? `${plural(groups.length, "group", "groups")} of photos that are the same or look alike. Keep one of each and delete the others.`
    : "No duplicates: every photo is one of a kind.";
  $("duplicate-groups").replaceChildren(...groups.map(duplicateGroup));
  return true;
}

function duplicateGroup(group, index) {
  const count = group.images.length;
  const title =
    group.kind === "exact"
      ? `Same file, ${plural(count, "copy", "copies")}`
      : `Look alike, ${plural(count, "photo", "photos")} (difference ${group.distance} of 64)`;
  const headingId = `duplicate-group-${index}`;
  return h(
    "section",
    { className: `duplicate-group kind-${group.kind}`, "aria-labelledby": headingId },
    h("h3", { id: headingId }, title),
    h(
      "ul",
      { className: "gallery", "aria-labelledby": headingId },
      group.images.map((image) => card(image, keepButton(image, group))),
    ),
  );
}

function keepButton(image, group) {
  const name = image.file_name || image.image_id;
  return h(
    "button",
    {
      type: "button",
      className: "keep",
      "aria-label": `Keep this one: ${name}`,
      onclick: (event) => keepOnly(image, group, event.currentTarget),
    },
    "Keep this one",
  );
}

/** Delete every photo of the group but `image`, after asking; then list the groups again. */
async function keepOnly(image, group, button) {
  const others = group.images.filter((other) => other.image_id !== image.image_id);
  if (!others.length) return;
  const name = image.file_name || image.image_id;
  const what = others.length === 1 ? "the other photo" : `the other ${others.length} photos`;
  if (!confirm(`Keep “${name}” and delete ${what} of this group?`)) return;
  button.disabled = true;
  const failed = [];
  for (const other of others) {
    try {
      await api("DELETE", `/api/images/${encodeURIComponent(other.image_id)}`);
    } catch (error) {
      // Already gone is what was wanted.
      if (!(error instanceof ApiError && error.status === 404)) failed.push([other, error]);
    }
  }
  await showDuplicates();
  if (failed.length) {
    const names = failed.map(
      ([other, error]) => `“${other.file_name || other.image_id}” (${plainError(error)})`,
    );
    $("duplicates-error").textContent =
      `${failed.length === 1 ? "A photo" : "Some photos"} could not be deleted: ${names.join(", ")}. ` +
      "The others were deleted; try again to delete the rest.";
  }
}

// ---------- routing and sign-in ----------

/** Forget everything of the signed-in user and show the sign-in form with `message`. */
function endSession(message) {
  session.token = null;
  if ($("viewer").open) closeViewer();
  if ($("detail").open) $("detail").close();
  clearSearch();
  duplicates.images = new Map();
  $("duplicate-groups").replaceChildren();
  state.opened.clear();
  naming.clear();
  state.user = null;
  state.albums = [];
  if (location.hash !== "#/" && location.hash !== "") location.hash = "#/";
  route().catch(showGalleryError);
  $("sign-in-error").textContent = message;
}

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
  // The Operations page is for operators only (the API refuses the rest anyway).
  $("operators-link").hidden = !state.user.operator;
  if (location.hash === "#/operators" && !state.user.operator) {
    location.hash = "#/";
    return;
  }
  const operators = location.hash === "#/operators";
  const duplicatesView = location.hash === "#/duplicates";
  if (duplicatesView) $("duplicates-link").setAttribute("aria-current", "page");
  else $("duplicates-link").removeAttribute("aria-current");
  if (operators || duplicatesView) {
    closeAlbum();
    renderAlbums();
    showPane(operators ? "operators-view" : "duplicates-view");
    if (operators) await showOperators($("operators-view"));
    else await showDuplicates();
    return;
  }
  const match = location.hash.match(/^#\/albums\/([A-Za-z0-9_-]+)/);
  if (match) {
    await openAlbum(match[1]);
  } else {
    closeAlbum();
    renderAlbums();
  }
  showBrowsePane();
}

/** The sign-in form for how this server signs in: a username alone on one machine; with
 * Cognito a username or e-mail and a password, verified by SRP against the user pool. */
function showSignInMode() {
  const cognito = session.cognito;
  const username = $("username");
  if (cognito) {
    username.removeAttribute("pattern");
    username.removeAttribute("title");
    username.maxLength = 128;
  }
  $("password-field").hidden = !cognito;
  $("password").disabled = !cognito;
}

function showNewPassword(shown) {
  $("new-password-field").hidden = !shown;
  $("new-password").disabled = !shown;
  $("new-password").required = shown;
}

/** Cognito asks for a new password after a temporary one: take it from the form, or show the
 * field and ask the user to sign in again with it filled in. */
function askNewPassword() {
  const value = $("new-password").value;
  if (value) return value;
  showNewPassword(true);
  $("new-password").focus();
  throw new CognitoError(
    400,
    "new_password_required",
    "your password is temporary: choose a new password and sign in again",
  );
}

function wire() {
  $("sign-in-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("sign-in-error").textContent = "";
    try {
      const username = $("username").value.trim();
      if (session.cognito) {
        await signInWithCognito(username, $("password").value, askNewPassword);
        $("password").value = "";
        $("new-password").value = "";
        showNewPassword(false);
      } else {
        const token = await api("POST", "/api/auth/sign-in", { username });
        session.token = token.access_token;
      }
      state.user = null;
      await route();
    } catch (error) {
      $("sign-in-error").textContent = `You could not be signed in. ${plainError(error)}`;
    }
  });

  $("sign-out").addEventListener("click", async () => {
    const button = $("sign-out");
    button.disabled = true;
    const revoked = await signOut();
    button.disabled = false;
    endSession(
      revoked
        ? ""
        : "You are signed out on this device, but the server could not be told: " +
            "your session stays valid elsewhere until it expires.",
    );
  });

  // Another tab signed in or out: follow it.
  session.onChange((token) => {
    if (!token) endSession("");
    else if (!state.user) route().catch(showGalleryError);
  });
  session.onEnded = () => endSession("Your session has ended. Sign in again.");

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
      $("album-error").textContent = `The album could not be created. ${plainError(error)}`;
    }
  });

  $("delete-album").addEventListener("click", async () => {
    const album = state.album;
    if (!album || !confirm("Delete this album and all its photos?")) return;
    $("gallery-error").textContent = "";
    try {
      await api("DELETE", `/api/albums/${encodeURIComponent(album.album_id)}`);
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 404)) {
        $("gallery-error").textContent = `The album could not be deleted. ${plainError(error)}`;
        return;
      }
    }
    state.albums = state.albums.filter((a) => a.album_id !== album.album_id);
    location.hash = "#/";
  });

  $("sort").addEventListener("change", () => renderGallery());
  $("select-all").addEventListener("click", () => {
    for (const id of state.order) state.selected.add(id);
    renderGallery();
  });
  $("select-none").addEventListener("click", () => {
    state.selected.clear();
    renderGallery();
  });
  $("delete-selected").addEventListener("click", deleteSelected);
  wireViewer();
  $("jump-to-albums").addEventListener("click", () => {
    const list = $("album-list");
    const target = list.querySelector("a[aria-current]") ?? list.querySelector("a") ?? $("album-name");
    $("albums-title").scrollIntoView({ block: "start" });
    target.focus();
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

  const searchInput = $("search-input");
  searchInput.addEventListener("input", () => {
    showBrowsePane();
    suggestLater();
  });
  searchInput.addEventListener("keydown", onSearchKey);
  searchInput.addEventListener("blur", () => {
    suggestLater.cancel();
    closeSuggestions();
  });
  for (const id of ["search-from", "search-to", "search-camera", "search-near", "search-album"]) {
    $(id).addEventListener("input", () => searchLater());
  }
  $("search-clear").addEventListener("click", () => {
    clearSearch();
    searchInput.focus();
  });
  $("search-more").addEventListener("click", () => runSearch(false));
  // Choosing an album ends the search: the album is what was asked for.
  $("album-list").addEventListener("click", (event) => {
    if (event.target.closest("a")) clearSearch();
  });
  $("detail-close").addEventListener("click", () => $("detail").close());
  window.addEventListener("hashchange", () => route().catch(showGalleryError));
}

async function start() {
  wire();
  try {
    await loadAuthConfig();
  } catch (error) {
    $("sign-in-error").textContent = `Signing in is not possible now. ${plainError(error)}`;
  }
  showSignInMode();
  await route();
}

start().catch(showGalleryError);
