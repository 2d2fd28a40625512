// Where the app's backend is and who is signed in. A real app has its own
// sign-in; this one signs in by name (the reference backend's demo sign-in)
// as the page's query says: ?server=http://127.0.0.1:7420&name=Ada&room=r_…
export interface AppParams {
  /** The reference backend (domvia-server), on another origin: requests carry a bearer token. */
  server: string;
  name: string;
  room: string;
  encrypted: boolean;
}

export function readParams(search: string): AppParams {
  const query = new URLSearchParams(search);
  return {
    server: query.get("server") ?? "http://127.0.0.1:7420",
    name: query.get("name") ?? "guest",
    room: query.get("room") ?? "",
    encrypted: query.get("encrypted") === "1",
  };
}

/** The broker's public settings, from the backend's `GET /api/config`. */
export interface BrokerConfig {
  key: string;
  host: string;
  port: number;
  forceTLS: boolean;
}

export async function fetchBrokerConfig(server: string): Promise<BrokerConfig> {
  const response = await fetch(`${server}/api/config`);
  if (!response.ok) throw new Error(`GET /api/config answered ${response.status}`);
  return (await response.json()) as BrokerConfig;
}

/** Signs in once; the headers every backend and auth request carries. */
export function signIn(server: string, name: string): () => Promise<Record<string, string>> {
  let token: Promise<string> | undefined;
  return async () => {
    token ??= fetch(`${server}/api/session`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name }),
    }).then(async (response) => {
      if (!response.ok) throw new Error(`sign-in answered ${response.status}`);
      return ((await response.json()) as { token: string }).token;
    });
    return { Authorization: `Bearer ${await token}` };
  };
}
