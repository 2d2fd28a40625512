/**
 * The auth requests the wasm connection asks for (`NoticeSink.authorize`):
 * a POST to the app server's endpoint, as pusher-js sends it. This layer only
 * carries the request; the core decides when to ask and checks the answer
 * (the signature's key and shape, the endpoint's refusal message).
 */

/** The endpoint's answer: status 0 when there was none, `body` then says why. */
export interface AuthAnswer {
  status: number;
  body: string;
}

/** How to reach the endpoint: the app's options. */
export interface AuthRequestOptions {
  headers?: Record<string, string> | undefined;
  params?: Record<string, string> | undefined;
  headersProvider?: (() => Promise<Record<string, string>>) | undefined;
}

function reason(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Thrown below to become a status-0 answer with this message. */
class NoAnswer {
  constructor(readonly message: string) {}
}

function setHeader(headers: Headers, name: string, value: string, from: string): void {
  try {
    headers.set(name, value);
  } catch (error) {
    // An invalid name or value fails the request with the browser's reason,
    // rather than the header going missing and the server refusing it.
    throw new NoAnswer(`invalid header ${JSON.stringify(name)}${from}; ${reason(error)}`);
  }
}

/**
 * POSTs `socket_id`, `channel_name` (absent for user authentication) and the
 * configured params as a form, with the configured headers and those of
 * `headersProvider`, sending cookies to the same origin only.
 */
export async function postAuth(
  endpoint: string,
  socketId: string,
  channel: string | undefined,
  options: AuthRequestOptions,
): Promise<AuthAnswer> {
  try {
    const form = new URLSearchParams({ socket_id: socketId });
    if (channel !== undefined) form.set("channel_name", channel);
    for (const [name, value] of Object.entries(options.params ?? {})) form.append(name, value);
    const headers = new Headers({ "Content-Type": "application/x-www-form-urlencoded" });
    for (const [name, value] of Object.entries(options.headers ?? {})) setHeader(headers, name, value, "");
    if (options.headersProvider !== undefined) {
      let provided: Record<string, unknown>;
      try {
        provided = await options.headersProvider();
      } catch (error) {
        throw new NoAnswer(`the headersProvider failed; ${reason(error)}`);
      }
      for (const [name, value] of Object.entries(provided ?? {})) {
        if (typeof value === "string") setHeader(headers, name, value, " from the headersProvider");
      }
    }
    let response: Response;
    try {
      response = await fetch(endpoint, { method: "POST", headers, body: form.toString(), credentials: "same-origin" });
    } catch (error) {
      throw new NoAnswer(`the auth endpoint could not be reached; ${reason(error)}`);
    }
    const body = await response.text().catch(() => "");
    return { status: response.status, body };
  } catch (error) {
    if (error instanceof NoAnswer) return { status: 0, body: error.message };
    return { status: 0, body: `unable to make the auth request; ${reason(error)}` };
  }
}
