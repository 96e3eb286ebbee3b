// The status API from the browser: JSON calls with the bearer token, presigned uploads with
// progress, and the album's live event stream (fetch-based SSE, so the token stays in a header).
//
// The session, one-machine sign-in: the token is kept in localStorage, so a new tab of this
// origin is signed in too, and signing out in one tab signs out the others (the "storage"
// event).
// The session, Cognito: the access token lives in memory only (a script injected later cannot
// find it in storage), and is refreshed before it expires; the refresh token is kept in
// sessionStorage, so a reload keeps the user signed in while another tab, or this one after
// it is closed, must sign in again: it is the long-lived credential, and not in localStorage
// where it would outlive the tab.
// Either token is only ever sent as an Authorization header, never as a cookie, so another site
// cannot make the browser use it (no CSRF); the page runs no inline or third-party script (its
// CSP) and puts every string in as text. Signing out revokes the token on the server
// (POST /api/auth/sign-out), and with Cognito also ends the user's refresh tokens.

import * as cognito from "./cognito_srp.js";

const TOKEN_KEY = "imgproc.token";
const REFRESH_KEY = "imgproc.cognito.refresh";
// Refresh this long before the access token expires (and at the latest at half its life).
const REFRESH_MARGIN_S = 300;
// A refresh that could not reach Cognito is tried again after this long.
const REFRESH_RETRY_MS = 30_000;

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Cognito's tokens for this tab: the access token in memory, the refresh token in
 * sessionStorage (see the top of this file), and the timer that refreshes them. */
const cognitoTokens = { access: null, expiresAt: 0, timer: null, refreshing: null };

export const session = {
  /** How to sign in (GET /api/auth-config): {mode: "local"} or {mode: "cognito", ...}. */
  config: { mode: "local" },
  get cognito() {
    return this.config.mode === "cognito";
  },
  get token() {
    return this.cognito ? cognitoTokens.access : localStorage.getItem(TOKEN_KEY);
  },
  set token(value) {
    if (this.cognito) {
      if (!value) forgetCognitoTokens();
      return;
    }
    if (value) localStorage.setItem(TOKEN_KEY, value);
    else localStorage.removeItem(TOKEN_KEY);
  },
  /** Called with the new token (or null) when another tab signs in or out (one-machine). */
  onChange(handler) {
    window.addEventListener("storage", (event) => {
      if (this.cognito) return;
      if (event.key === TOKEN_KEY || event.key === null) handler(session.token);
    });
  },
  /** Set by the app: called when the API refuses the token (expired, revoked). */
  onEnded: null,
};

/** Read how to sign in; with Cognito, resume this tab's session from its refresh token. */
export async function loadAuthConfig() {
  session.config = await api("GET", "/api/auth-config");
  if (session.cognito && sessionStorage.getItem(REFRESH_KEY)) {
    try {
      await refreshCognitoTokens();
    } catch {
      forgetCognitoTokens();
    }
  }
  return session.config;
}

/** Sign in with the user pool (SRP); `onNewPassword` answers a temporary password's challenge. */
export async function signInWithCognito(username, password, onNewPassword) {
  const result = await cognito.signIn(session.config, username, password, onNewPassword);
  keepCognitoTokens(result);
}

function keepCognitoTokens(result) {
  cognitoTokens.access = result.AccessToken;
  if (result.RefreshToken) sessionStorage.setItem(REFRESH_KEY, result.RefreshToken);
  const lifetime = Number(result.ExpiresIn) || 3600;
  cognitoTokens.expiresAt = Date.now() + lifetime * 1000;
  scheduleRefresh(Math.max(lifetime - REFRESH_MARGIN_S, lifetime / 2) * 1000);
}

function scheduleRefresh(delayMs) {
  clearTimeout(cognitoTokens.timer);
  cognitoTokens.timer = setTimeout(() => {
    refreshCognitoTokens().catch((error) => {
      if (error instanceof cognito.CognitoError && error.status === 0) {
        scheduleRefresh(REFRESH_RETRY_MS);
        return;
      }
      // Refused (signed out elsewhere, refresh token expired): the session is over.
      forgetCognitoTokens();
      session.onEnded?.(new ApiError(401, "token_expired", error.message));
    });
  }, delayMs);
}

/** One refresh at a time: calls that find the token about to expire wait for the same one. */
function refreshCognitoTokens() {
  if (!cognitoTokens.refreshing) {
    const refreshToken = sessionStorage.getItem(REFRESH_KEY);
    if (!refreshToken) return Promise.reject(new Error("no refresh token"));
    cognitoTokens.refreshing = cognito
      .refresh(session.config, refreshToken)
      .then(keepCognitoTokens)
      .finally(() => {
        cognitoTokens.refreshing = null;
      });
  }
  return cognitoTokens.refreshing;
}

function forgetCognitoTokens() {
  clearTimeout(cognitoTokens.timer);
  cognitoTokens.access = null;
  cognitoTokens.expiresAt = 0;
  sessionStorage.removeItem(REFRESH_KEY);
}

/** A timer does not run while the computer sleeps: refresh first if the token is nearly due. */
async function freshToken() {
  if (session.cognito && cognitoTokens.access && cognitoTokens.expiresAt - Date.now() < 60_000) {
    await refreshCognitoTokens().catch(() => {});
  }
  return session.token;
}

export async function api(method, path, body) {
  const headers = {};
  const token = await freshToken();
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

/** Revoke the token on the server (and with Cognito end the user's refresh tokens), then
 * forget it here (also when the server cannot be told). True when nothing stays valid. */
export async function signOut() {
  const token = session.token;
  let ended = true;
  try {
    if (token) await api("POST", "/api/auth/sign-out");
  } catch (error) {
    // Already refused (expired or revoked): nothing left to revoke.
    ended = error instanceof ApiError && error.status === 401;
  }
  if (token && session.cognito) {
    try {
      await cognito.globalSignOut(session.config, token);
    } catch (error) {
      ended = ended && error.code === "cognito_NotAuthorizedException";
    }
  }
  session.token = null;
  return ended;
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
      const token = await freshToken();
      const response = await fetch(`/api/albums/${encodeURIComponent(albumId)}/events`, {
        headers: { Authorization: `Bearer ${token}`, Accept: "text/event-stream" },
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
