/** A non-2xx answer from dejimad (or a websocket handshake it refused). */
export class DejimaError extends Error {
  /** The HTTP status, e.g. 404. */
  readonly status: number;
  /** The request's method, e.g. "GET". */
  readonly method: string;
  /** The request's path (with its query), e.g. "/v1/islands/foo". */
  readonly path: string;
  /** The parsed JSON body (normally `{ error: "..." }`), or the raw text when it was not JSON. */
  readonly body: unknown;

  constructor(status: number, message: string, init: { method?: string; path?: string; body?: unknown } = {}) {
    super(message);
    this.name = "DejimaError";
    this.status = status;
    this.method = init.method ?? "";
    this.path = init.path ?? "";
    this.body = init.body;
  }

  /** Build the error from a response body: the daemon's `{"error": "..."}` when it has one. */
  static fromBody(status: number, raw: Buffer | string, method: string, path: string): DejimaError {
    const text = typeof raw === "string" ? raw : raw.toString("utf8");
    let body: unknown = text;
    let message = "";
    try {
      body = JSON.parse(text);
      if (body && typeof body === "object" && typeof (body as { error?: unknown }).error === "string") {
        message = (body as { error: string }).error;
      }
    } catch {
      message = text.trim();
    }
    if (!message) message = `HTTP ${status}`;
    return new DejimaError(status, message, { method, path, body });
  }
}

/** The request did not finish within the client's `timeout`. */
export class DejimaTimeoutError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "DejimaTimeoutError";
  }
}
