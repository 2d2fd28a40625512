import { Component, inject, InjectionToken, signal } from "@angular/core";
import { DomViaChat } from "@domvia/realtime-angular";
import { ChatRoomComponent } from "./chat-room";
import type { AppParams } from "./session";

export const APP_PARAMS = new InjectionToken<AppParams>("app params");

@Component({
  selector: "app-root",
  imports: [ChatRoomComponent],
  template: `
    <main>
      <h1>DomVia chat · Angular</h1>
      <p data-testid="connection">{{ connection() }}</p>
      <button data-testid="toggle-room" (click)="shown.set(!shown())">{{ shown() ? "Hide room" : "Show room" }}</button>
      @if (shown() && params.room !== "") {
        <app-chat-room [roomId]="params.room" [encrypted]="params.encrypted" />
      }
    </main>
  `,
})
export class AppComponent {
  protected readonly params = inject(APP_PARAMS);
  protected readonly connection = inject(DomViaChat).connectionState();
  protected readonly shown = signal(true);
}
