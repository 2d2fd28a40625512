import { useMemo, useState } from "react";
import type { FormEvent } from "react";
import { DomViaProvider, useChatRoom, useConnectionState } from "@domvia/realtime-react";
import type { DomViaRealtimeOptions } from "@domvia/realtime";
import { signIn } from "./session";
import type { AppParams, BrokerConfig } from "./session";

export function App({ params, broker }: { params: AppParams; broker: BrokerConfig }) {
  const headers = useMemo(() => signIn(params.server, params.name), [params.server, params.name]);
  const options: DomViaRealtimeOptions = {
    key: broker.key,
    host: broker.host,
    port: broker.port,
    forceTLS: broker.forceTLS,
    authEndpoint: `${params.server}/realtime/auth`,
    userAuthentication: { endpoint: `${params.server}/realtime/user-auth` },
    headersProvider: headers,
    clientEvents: true,
  };
  const [shown, setShown] = useState(true);
  return (
    <DomViaProvider options={options} roomDefaults={{ api: { baseUrl: params.server, headersProvider: headers } }}>
      <main>
        <h1>DomVia chat · React</h1>
        <ConnectionBadge />
        <button data-testid="toggle-room" onClick={() => setShown((value) => !value)}>
          {shown ? "Hide room" : "Show room"}
        </button>
        {shown && params.room !== "" && <Room roomId={params.room} encrypted={params.encrypted} />}
      </main>
    </DomViaProvider>
  );
}

function ConnectionBadge() {
  return <p data-testid="connection">{useConnectionState()}</p>;
}

function Room({ roomId, encrypted }: { roomId: string; encrypted: boolean }) {
  const [heard, setHeard] = useState(0);
  // Inline options and listener: compared by value and kept current, so neither reopens the room.
  const room = useChatRoom(roomId, { encrypted, onMessage: () => setHeard((count) => count + 1) });
  // The text is read from the form when it is submitted, not from state: a
  // submit that follows an input event at once may come before React renders.
  const send = (event: FormEvent<HTMLFormElement>) => {
    event.preventDefault();
    const form = event.currentTarget;
    const text = String(new FormData(form).get("text") ?? "");
    if (text.trim() === "") return;
    room.sendMessage({ text }).catch((error: unknown) => console.info("send failed", error));
    form.reset();
  };

  return (
    <section data-testid="room" data-status={room.status}>
      <p data-testid="room-status">{room.status === "loading" ? "Loading the room…" : room.status}</p>
      {room.error && <p data-testid="room-error">{room.error.code}</p>}
      <ul data-testid="messages">
        {room.messages.map((message) => (
          <li key={message.client_id} data-testid="message" data-status={message.status}>
            {message.text ?? `(${message.decryption_error?.code ?? "unreadable"})`}
          </li>
        ))}
      </ul>
      <p data-testid="typing">{room.typingUserIds.join(",")}</p>
      <p data-testid="heard">{heard}</p>
      <form onSubmit={send}>
        <input data-testid="composer" name="text" autoComplete="off" onChange={() => room.sendTyping()} />
        <button data-testid="send" type="submit" disabled={room.status !== "ready"}>
          Send
        </button>
      </form>
    </section>
  );
}
