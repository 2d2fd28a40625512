/**
 * The backend's HTTP API (server/backend/API.md) as the room uses it: JSON
 * over fetch, the session cookie or app-supplied headers, and errors
 * `{ error: { code, message } }` turned into `DomViaError`s with that code.
 */
import type { DomViaErrorCode } from "@domvia/realtime/core";
import { DomViaError } from "@domvia/realtime/core";
import type { ChatApiOptions } from "./types.js";

/** A `DomViaError` with one of the registered codes ({@link DomViaErrorCode}). */
export function chatError(code: DomViaErrorCode, message: string, options?: { cause?: unknown }): DomViaError {
  return new DomViaError(code, message, options);
}

/**
 * A `DomViaError` with the code a backend refused a request with, passed through
 * as it came: the reference backend's codes are in `BackendErrorCode` (checked
 * against its API.md), but another backend implementing the API may answer
 * others, which no type can know in advance. The room's session reports such
 * codes too (it reads the backend's answers), so its failures come through here.
 * The one unchecked code in this package.
 */
export function backendError(code: string, message: string): DomViaError {
  return new DomViaError(code as DomViaErrorCode, message);
}

/** A request that did not succeed, and whether sending it again may help. */
export class RequestFailure extends Error {
  override readonly name = "RequestFailure";

  constructor(
    readonly error: DomViaError,
    /** No answer, a 5xx or a 429: the same request may succeed later. */
    readonly retryable: boolean,
    readonly status: number | undefined,
    /** The error's extra fields besides `code` and `message` (API.md lists them per route). */
    readonly details: Readonly<Record<string, unknown>> = {},
  ) {
    super(error.message, { cause: error });
  }
}

/** The backend's answer to a request that succeeded. */
export interface Answer<T> {
  status: number;
  body: T;
}

export class BackendClient {
  readonly #options: ChatApiOptions;
  readonly #abort = new AbortController();

  constructor(options: ChatApiOptions = {}) {
    this.#options = options;
  }

  /** Aborts every request in flight and every later one. */
  close(): void {
    this.#abort.abort();
  }

  /**
   * One request, answered as its status and body text, never thrown: the
   * room's session reads the answer and decides. Status 0 means there was
   * no answer (offline, aborted, refused by CORS, a failing headersProvider);
   * the body then says why.
   */
  async exchange(
    method: "GET" | "POST" | "PUT",
    path: string,
    options: { body?: string | undefined; socketId?: string | undefined; keepalive?: boolean | undefined } = {},
  ): Promise<{ status: number; body: string }> {
    try {
      const response = await fetch(`${this.#options.baseUrl ?? ""}${path}`, await this.#init(method, options));
      return { status: response.status, body: await response.text().catch(() => "") };
    } catch (cause) {
      return { status: 0, body: describe(cause) };
    }
  }

  async #init(
    method: string,
    options: { body?: string | undefined; socketId?: string | undefined; keepalive?: boolean | undefined },
  ): Promise<RequestInit> {
    const headers: Record<string, string> = { accept: "application/json", ...this.#options.headers };
    if (this.#options.headersProvider !== undefined) {
      try {
        Object.assign(headers, await this.#options.headersProvider());
      } catch (cause) {
        throw new Error(`headersProvider failed: ${describe(cause)}`, { cause });
      }
    }
    if (options.body !== undefined) headers["content-type"] = "application/json";
    if (options.socketId !== undefined) headers["x-socket-id"] = options.socketId;
    const init: RequestInit = { method, headers, credentials: this.#options.credentials ?? "same-origin" };
    // A keepalive request (the last read position, sent while leaving) outlives close() and the page.
    if (options.keepalive === true) init.keepalive = true;
    else init.signal = this.#abort.signal;
    if (options.body !== undefined) init.body = options.body;
    return init;
  }

  /**
   * One JSON request. `operation` reads like "load the room" and names the
   * request in errors ("unable to load the room; ...").
   *
   * @throws {RequestFailure}
   */
  async request<T>(
    operation: string,
    method: "GET" | "POST" | "PUT",
    path: string,
    options: { body?: unknown; socketId?: string | undefined; keepalive?: boolean } = {},
  ): Promise<Answer<T>> {
    const answer = await this.exchange(method, path, {
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
      socketId: options.socketId,
      keepalive: options.keepalive,
    });
    if (answer.status === 0) {
      throw new RequestFailure(
        chatError("network_error", `unable to ${operation}; the backend is unreachable: ${answer.body}`),
        true,
        undefined,
      );
    }
    const response = { status: answer.status, ok: answer.status >= 200 && answer.status < 300 };
    let body: unknown;
    try {
      body = answer.body.length > 0 ? JSON.parse(answer.body) : null;
    } catch {
      body = null;
    }
    if (response.ok) return { status: response.status, body: body as T };

    const retryable = response.status >= 500 || response.status === 429;
    const error = (body as { error?: { code?: unknown; message?: unknown } } | null)?.error;
    const message =
      typeof error?.message === "string" ? error.message : `unable to ${operation}; the backend answered ${response.status}`;
    const details: Record<string, unknown> = {};
    if (typeof error === "object" && error !== null) {
      for (const [key, value] of Object.entries(error)) if (key !== "code" && key !== "message") details[key] = value;
    }
    const refused =
      typeof error?.code === "string"
        ? backendError(error.code, message)
        : chatError(retryable ? "network_error" : "invalid_response", message);
    throw new RequestFailure(refused, retryable, response.status, details);
  }
}

function describe(cause: unknown): string {
  return cause instanceof Error ? cause.message : String(cause);
}
