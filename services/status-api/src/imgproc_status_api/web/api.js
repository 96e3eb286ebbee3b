// The status API from the browser: JSON calls with the bearer token, presigned uploads with
// progress, and the album's live event stream (fetch-based SSE, so the token stays in a header).
//
// The session: the token is kept in localStorage, so a new tab of this origin is signed in too,
// and signing out in one tab signs out the others (the "storage" event). It is only ever sent
// as an Authorization header, never as a cookie, so another site cannot make the browser use
// it (no CSRF); the page runs no inline or third-party script (its CSP) and puts every string
// in as text. Signing out revokes the token on the server (POST /api/auth/sign-out).

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
    return localStorage.getItem(TOKEN_KEY);
  },
  set token(value) {
    if (value) localStorage.setItem(TOKEN_KEY, value);
    else localStorage.removeItem(TOKEN_KEY);
  },
  /** Called with the new token (or null) when another tab signs in or out. */
  onChange(handler) {
    window.addEventListener("storage", (event) => {
      if (event.key === TOKEN_KEY || event.key === null) handler(session.token);
    });
  },
  /** Set by the app: called when the API refuses the token (expired, revoked). */
  onEnded: null,
};

export async function api(method, path, body) {
  const headers = {};
  const token = session.token;
  if (token) headers.Authorization = `Bearer ${token}`;
  const init = { method, headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, "network_error", "the server could not be reached");
  }
  if (response.status === 204) return null;
  let payload = null;
  try {
    payload = await response.json();
  } catch {
    payload = null;
  }
  if (!response.ok) {
    const code = payload?.code ?? `http_${response.status}`;
    const error = new ApiError(response.status, code, payload?.message ?? response.statusText);
    if (response.status === 401 && token && token === session.token) session.onEnded?.(error);
    throw error;
  }
  return payload;
}

/** Revoke the token on the server, then forget it here (also when the server cannot be told). */
export async function signOut() {
  try {
    if (session.token) await api("POST", "/api/auth/sign-out");
    return true;
  } catch (error) {
    // Already refused (expired or revoked): nothing left to revoke.
    return error instanceof ApiError && error.status === 401;
  } finally {
    session.token = null;
  }
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
        reject(new ApiError(request.status, storageCode(request.responseText), "storage refused it"));
      }
    });
    request.addEventListener("error", () =>
      reject(new ApiError(0, "network_error", "the connection was lost while uploading")),
    );
    request.send(form);
  });
}

/** The error code of an S3 XML error body ("EntityTooLarge", "AccessDenied"...), lower-cased. */
function storageCode(text) {
  const match = /<Code>([A-Za-z]+)<\/Code>/.exec(text || "");
  return match ? `storage_${match[1].toLowerCase()}` : "storage_refused";
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
