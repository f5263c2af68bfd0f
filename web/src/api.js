// Same-origin JSON calls to dejimad. Auth is an HttpOnly cookie: never a token in a URL.

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

let onUnauthorized = () => {};

/** Called with the error whenever a call answers 401 (the login is gone). */
export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

/**
 * fetch() a daemon route. `body`: undefined (none), a Blob/File (sent raw as
 * application/octet-stream) or anything JSON. Resolves to the parsed JSON (null for 204),
 * rejects with an ApiError carrying the daemon's `{"error": "..."}` text.
 */
export async function api(method, path, body, { quiet401 = false } = {}) {
  const init = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
  if (body instanceof Blob) {
    init.body = body;
    init.headers['Content-Type'] = 'application/octet-stream';
  } else if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers['Content-Type'] = 'application/json';
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, `cannot reach the daemon (${e.message})`);
  }
  const text = res.status === 204 ? '' : await res.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (!res.ok) {
    let msg = `${res.status} ${res.statusText}`;
    if (data && typeof data === 'object' && typeof data.error === 'string') msg = data.error;
    else if (typeof data === 'string' && data.trim()) msg = data.trim().slice(0, 300);
    const err = new ApiError(res.status, msg);
    if (res.status === 401 && !quiet401) onUnauthorized(err);
    throw err;
  }
  return data;
}

export const enc = encodeURIComponent;

/** /v1/islands/<name>[/agents/<id>] */
export function islandPath(name, agent) {
  let p = `/v1/islands/${enc(name)}`;
  if (agent !== undefined) p += `/agents/${enc(agent)}`;
  return p;
}
