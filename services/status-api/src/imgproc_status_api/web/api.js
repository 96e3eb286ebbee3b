// The status API from the browser: JSON calls with the bearer token, presigned uploads with
// progress, and the album's live event stream (fetch-based SSE, so the token stays in a header).

const TOKEN_KEY = "imgproc.token";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export const session = {
  get token() {
    return sessionStorage.getItem(TOKEN_KEY);
  },
  set token(value) {
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    else sessionStorage.removeItem(TOKEN_KEY);
  },
};

export async function api(method, path, body) {
  const headers = {};
  if (session.token) headers.Authorization = `Bearer ${session.token}`;
  const init = { method, headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (response.status === 204) return null;
  let payload = null;
  try {
    payload = await response.json();
  } catch {
    payload = null;
  }
  if (!response.ok) {
    const code = payload?.code ?? `http_${response.status}`;
    throw new ApiError(response.status, code, payload?.message ?? response.statusText);
  }
  return payload;
}

/** POST a file to a presigned S3 POST; onProgress(fraction). Resolves when S3 accepted it. */
export function uploadToS3(grant, file, onProgress) {
  return new Promise((resolve, reject) => {
    const form = new FormData();
    for (const [name, value] of Object.entries(grant.upload.fields)) form.append(name, value);
    form.append("file", file); // S3 requires the file to be the last field
    const request = new XMLHttpRequest();
    request.open("POST", grant.upload.url);
    request.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    });
    request.addEventListener("load", () => {
      if (request.status >= 200 && request.status < 300) {
        onProgress(1);
        resolve();
      } else {
        reject(new Error(`storage answered ${request.status}`));
      }
    });
    request.addEventListener("error", () => reject(new Error("network error while uploading")));
    request.send(form);
  });
}

/**
 * Follow an album's event stream until `signal` aborts, reconnecting after errors.
 * handlers: {onReady(), onEvent(kind, data), onState(text)}.
 */
export async function followAlbum(albumId, signal, handlers) {
  let delay = 500;
  while (!signal.aborted) {
    try {
      const response = await fetch(`/api/albums/${encodeURIComponent(albumId)}/events`, {
        headers: { Authorization: `Bearer ${session.token}`, Accept: "text/event-stream" },
        signal,
      });
      if (response.status === 401 || response.status === 404) {
        handlers.onState("closed");
        return response.status;
      }
      if (!response.ok || !response.body) throw new Error(`events answered ${response.status}`);
      delay = 500;
      await readEvents(response.body, handlers);
    } catch (error) {
      if (signal.aborted) return 0;
    }
    handlers.onState("reconnecting");
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(delay * 2, 10000);
  }
  return 0;
}

async function readEvents(body, handlers) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let kind = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "event") kind = text;
        else if (field === "data") data.push(text);
      }
      if (!data.length) continue;
      if (kind === "ready") {
        handlers.onState("live");
        handlers.onReady();
      } else {
        handlers.onEvent(kind, JSON.parse(data.join("\n")));
      }
    }
  }
}
