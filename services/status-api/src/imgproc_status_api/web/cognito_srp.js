// Sign-in with a Cognito user pool from the browser, without an SDK: Secure Remote Password
// (USER_SRP_AUTH, then the PASSWORD_VERIFIER challenge), refresh (REFRESH_TOKEN_AUTH) and
// sign-out (GlobalSignOut). These are the user pool's public operations: a JSON POST with an
// `X-Amz-Target` header and no AWS signature. The password never leaves the page; the server
// only learns that we know it (the SRP-6a proof below, as Cognito's own SDKs compute it).
// The math uses BigInt and WebCrypto (SHA-256, HMAC).

// RFC 3526's 3072-bit MODP group, generator 2: the group Cognito uses.
const N = BigInt(
  "0x" +
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A0879" +
    "8E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B" +
    "0BFF5CB6F406B7EDEE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA4836" +
    "1C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804" +
    "F1746C08CA18217C32905E462E36CE3BE39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6" +
    "955817183995497CEA956AE515D2261898FA051015728E5A8AAAC42DAD33170D04507A33A85521ABDF1CBA64" +
    "ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7ABF5AE8CDB0933D71E8C94E04A25619DCEE3D226" +
    "1AD2EE6BF12FFA06D98A0864D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E2" +
    "08E24FA074E5AB3143DB5BFCE0FD108E4B82D120A93AD2CAFFFFFFFFFFFFFFFF",
);
const G = 2n;
const encoder = new TextEncoder();

export class CognitoError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Even-length hex of a non-negative integer, with a leading 00 when its top bit is set (the
 * two's-complement bytes Java's BigInteger gives, which is what Cognito hashes). */
export function padHex(value) {
  let hex = value.toString(16);
  if (hex.length % 2) hex = `0${hex}`;
  return /^[89a-f]/i.test(hex) ? `00${hex}` : hex;
}

function hexToBytes(hex) {
  const bytes = new Uint8Array(hex.length / 2);
  for (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return bytes;
}

function bytesToHex(bytes) {
  return [...new Uint8Array(bytes)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

async function sha256Hex(bytes) {
  return bytesToHex(await crypto.subtle.digest("SHA-256", bytes));
}

async function hmac(keyBytes, message) {
  const key = await crypto.subtle.importKey(
    "raw", keyBytes, { name: "HMAC", hash: "SHA-256" }, false, ["sign"],
  );
  return new Uint8Array(await crypto.subtle.sign("HMAC", key, message));
}

function modPow(base, exponent, modulus) {
  let result = 1n;
  let b = ((base % modulus) + modulus) % modulus;
  let e = exponent;
  while (e > 0n) {
    if (e & 1n) result = (result * b) % modulus;
    b = (b * b) % modulus;
    e >>= 1n;
  }
  return result;
}

const hexHashToInt = async (hex) => BigInt(`0x${await sha256Hex(hexToBytes(hex))}`);

/** "Sun Dec 6 22:05:01 UTC 2026": Java's "EEE MMM d HH:mm:ss z yyyy" in UTC, as Cognito signs. */
export function cognitoTimestamp(date = new Date()) {
  const days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
  const months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov",
                  "Dec"];
  const two = (n) => String(n).padStart(2, "0");
  const time = `${two(date.getUTCHours())}:${two(date.getUTCMinutes())}:${two(date.getUTCSeconds())}`;
  return `${days[date.getUTCDay()]} ${months[date.getUTCMonth()]} ${date.getUTCDate()} ${time} UTC ` +
    `${date.getUTCFullYear()}`;
}

/** The secret block's bytes. Cognito sends base64; moto (the local stack's Cognito) sends a
 * plain session id and does not check the signature, so its text is signed as it is. */
function secretBlockBytes(secretBlock) {
  try {
    return Uint8Array.from(atob(secretBlock), (c) => c.charCodeAt(0));
  } catch {
    return encoder.encode(secretBlock);
  }
}

/** One SRP exchange: a fresh random `a` and its public `A` (sent as SRP_A). */
export class SrpClient {
  static async create() {
    const random = crypto.getRandomValues(new Uint8Array(128));
    const smallA = BigInt(`0x${bytesToHex(random)}`);
    const largeA = modPow(G, smallA, N);
    if (largeA % N === 0n) throw new Error("SRP: A mod N is 0");
    const k = await hexHashToInt(padHex(N) + padHex(G));
    return new SrpClient(smallA, largeA, k);
  }

  constructor(smallA, largeA, k) {
    this.smallA = smallA;
    this.largeA = largeA;
    this.k = k;
  }

  get largeAHex() {
    return this.largeA.toString(16);
  }

  /** PASSWORD_CLAIM_SIGNATURE (base64) and the TIMESTAMP it signs, from the challenge. */
  async passwordClaim({ userPoolId, userIdForSrp, password, salt, srpB, secretBlock, now }) {
    const B = BigInt(`0x${srpB}`);
    if (B % N === 0n) throw new Error("SRP: B mod N is 0");
    const u = await hexHashToInt(padHex(this.largeA) + padHex(B));
    if (u === 0n) throw new Error("SRP: u is 0");
    const poolName = userPoolId.split("_")[1];
    const identity = await sha256Hex(encoder.encode(`${poolName}${userIdForSrp}:${password}`));
    const x = await hexHashToInt(padHex(BigInt(`0x${salt}`)) + identity);
    const S = modPow(B - this.k * modPow(G, x, N), this.smallA + u * x, N);
    // HKDF-SHA256 to 16 bytes: salt u, input S, info "Caldera Derived Key".
    const prk = await hmac(hexToBytes(padHex(u)), hexToBytes(padHex(S)));
    const info = concat(encoder.encode("Caldera Derived Key"), new Uint8Array([1]));
    const key = (await hmac(prk, info)).slice(0, 16);
    const timestamp = cognitoTimestamp(now);
    const message = concat(
      encoder.encode(poolName),
      encoder.encode(userIdForSrp),
      secretBlockBytes(secretBlock),
      encoder.encode(timestamp),
    );
    const signature = btoa(String.fromCharCode(...(await hmac(key, message))));
    return { signature, timestamp };
  }
}

/** One call of the user pool API; a refusal becomes a CognitoError with Cognito's own words. */
async function call(config, operation, body) {
  let response;
  try {
    response = await fetch(config.endpoint, {
      method: "POST",
      headers: {
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": `AWSCognitoIdentityProviderService.${operation}`,
      },
      body: JSON.stringify(body),
    });
  } catch {
    throw new CognitoError(0, "network_error", "the sign-in service could not be reached");
  }
  const payload = await response.json().catch(() => ({}));
  if (!response.ok) {
    const type = String(payload.__type || `http_${response.status}`).split("#").pop();
    throw new CognitoError(response.status, `cognito_${type}`, payload.message || type);
  }
  return payload;
}

/**
 * Sign in with a username (or e-mail) and password. Resolves to Cognito's AuthenticationResult
 * ({AccessToken, IdToken, RefreshToken, ExpiresIn}). A user whose temporary password must be
 * replaced gets `onNewPassword()` asked for a new one (NEW_PASSWORD_REQUIRED).
 */
export async function signIn(config, username, password, onNewPassword) {
  const srp = await SrpClient.create();
  const started = await call(config, "InitiateAuth", {
    AuthFlow: "USER_SRP_AUTH",
    ClientId: config.client_id,
    AuthParameters: { USERNAME: username, SRP_A: srp.largeAHex },
  });
  if (started.ChallengeName !== "PASSWORD_VERIFIER") {
    throw new CognitoError(400, "cognito_unexpected_challenge", `unexpected ${started.ChallengeName}`);
  }
  const challenge = started.ChallengeParameters;
  const claim = await srp.passwordClaim({
    userPoolId: config.user_pool_id,
    // The verifier was made with the user's internal id; answer under the name Cognito gave.
    userIdForSrp: challenge.USER_ID_FOR_SRP,
    password,
    salt: challenge.SALT,
    srpB: challenge.SRP_B,
    secretBlock: challenge.SECRET_BLOCK,
  });
  let answer = await call(config, "RespondToAuthChallenge", {
    ChallengeName: "PASSWORD_VERIFIER",
    ClientId: config.client_id,
    Session: started.Session,
    ChallengeResponses: {
      USERNAME: challenge.USERNAME,
      PASSWORD_CLAIM_SECRET_BLOCK: challenge.SECRET_BLOCK,
      PASSWORD_CLAIM_SIGNATURE: claim.signature,
      TIMESTAMP: claim.timestamp,
    },
  });
  if (answer.ChallengeName === "NEW_PASSWORD_REQUIRED" && onNewPassword) {
    const newPassword = await onNewPassword();
    answer = await call(config, "RespondToAuthChallenge", {
      ChallengeName: "NEW_PASSWORD_REQUIRED",
      ClientId: config.client_id,
      Session: answer.Session,
      ChallengeResponses: { USERNAME: challenge.USERNAME, NEW_PASSWORD: newPassword },
    });
  }
  if (!answer.AuthenticationResult) {
    throw new CognitoError(400, "cognito_unsupported_challenge",
      `this sign-in needs ${answer.ChallengeName}, which this page does not offer`);
  }
  return answer.AuthenticationResult;
}

/** New access and ID tokens for a refresh token (the refresh token itself stays the same). */
export async function refresh(config, refreshToken) {
  const answer = await call(config, "InitiateAuth", {
    AuthFlow: "REFRESH_TOKEN_AUTH",
    ClientId: config.client_id,
    AuthParameters: { REFRESH_TOKEN: refreshToken },
  });
  return answer.AuthenticationResult;
}

/** End every session of the user: their refresh tokens stop working (Cognito's GlobalSignOut;
 * the API separately refuses this access token from now on). */
export async function globalSignOut(config, accessToken) {
  await call(config, "GlobalSignOut", { AccessToken: accessToken });
}
