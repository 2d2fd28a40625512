// A server component: it renders on the server on every request (it reads the
// query), fetches the broker's public settings there, and hands them to the
// client component. The SDK itself never runs here: the server HTML has the
// room's empty "loading" placeholder and no wasm is loaded on the server.
import { Chat } from "./chat";
import type { BrokerConfig } from "./session";

/** The reference backend, as the server reaches it (and pages too, with CORS and a bearer token). */
const SERVER = process.env.DOMVIA_SERVER ?? "http://127.0.0.1:7420";

export default async function Page({ searchParams }: { searchParams: Promise<Record<string, string | undefined>> }) {
  const query = await searchParams;
  const response = await fetch(`${SERVER}/api/config`, { cache: "no-store" });
  if (!response.ok) throw new Error(`GET /api/config answered ${response.status}`);
  const broker = (await response.json()) as BrokerConfig;
  return (
    <Chat
      server={SERVER}
      broker={broker}
      name={query.name ?? "guest"}
      room={query.room ?? ""}
      encrypted={query.encrypted === "1"}
    />
  );
}
