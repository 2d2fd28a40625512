import { Component, inject, input, signal } from "@angular/core";
import { DomViaChat } from "@domvia/realtime-angular";

@Component({
  selector: "app-chat-room",
  template: `
    <section data-testid="room" [attr.data-status]="room.status()">
      <p data-testid="room-status">{{ room.status() === "loading" ? "Loading the room…" : room.status() }}</p>
      @if (room.error(); as error) {
        <p data-testid="room-error">{{ error.code }}</p>
      }
      <ul data-testid="messages">
        @for (message of room.messages(); track message.client_id) {
          <li data-testid="message" [attr.data-status]="message.status">
            {{ message.text ?? "(" + (message.decryption_error?.code ?? "unreadable") + ")" }}
          </li>
        }
      </ul>
      <p data-testid="typing">{{ room.typing().join(",") }}</p>
      <p data-testid="heard">{{ heard() }}</p>
      <form (submit)="send($event)">
        <input data-testid="composer" [value]="draft()" (input)="typed($event)" />
        <button data-testid="send" type="submit" [disabled]="room.status() !== 'ready'">Send</button>
      </form>
    </section>
  `,
})
export class ChatRoomComponent {
  readonly roomId = input.required<string>();
  readonly encrypted = input(false);
  protected readonly heard = signal(0);
  protected readonly draft = signal("");
  // The id and options read inputs: given as getters, they are read once the inputs are set.
  // The room is released when this component is destroyed.
  protected readonly room = inject(DomViaChat).chatRoom(
    () => this.roomId(),
    () => ({ encrypted: this.encrypted(), onMessage: () => this.heard.update((count) => count + 1) }),
  );

  protected typed(event: Event): void {
    this.draft.set((event.target as HTMLInputElement).value);
    this.room.sendTyping();
  }

  protected send(event: Event): void {
    event.preventDefault();
    const text = this.draft();
    if (text.trim() === "") return;
    this.room.sendMessage({ text }).catch((failure: unknown) => console.info("send failed", failure));
    this.draft.set("");
  }
}
