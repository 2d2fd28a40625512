import { bootstrapApplication } from "@angular/platform-browser";
import { provideDomVia } from "@domvia/realtime-angular";
import { AppComponent, APP_PARAMS } from "./app/app";
import { changeDetection } from "./app/change-detection";
import { fetchBrokerConfig, readParams, signIn } from "./app/session";

// No top-level await: Angular's zone.js builds down-level async code, and TLA with it.
async function start(): Promise<void> {
  const params = readParams(location.search);
  const broker = await fetchBrokerConfig(params.server);
  const headers = signIn(params.server, params.name);

  // Zoneless by default (signals drive change detection); the `zone` build uses zone.js.
  await bootstrapApplication(AppComponent, {
    providers: [
      ...changeDetection,
      { provide: APP_PARAMS, useValue: params },
      provideDomVia({
        options: {
          key: broker.key,
          host: broker.host,
          port: broker.port,
          forceTLS: broker.forceTLS,
          authEndpoint: `${params.server}/realtime/auth`,
          userAuthentication: { endpoint: `${params.server}/realtime/user-auth` },
          headersProvider: headers,
          clientEvents: true,
          // Angular CLI's builder does not copy files named by new URL(…, import.meta.url):
          // angular.json's assets copy them to /domvia/, and these URLs say so.
          wasm: "/domvia/domvia_realtime_bg.wasm",
        },
        roomDefaults: {
          api: { baseUrl: params.server, headersProvider: headers },
          encryptionWasm: "/domvia/domvia_e2ee_bg.wasm",
        },
      }),
    ],
  });
}

start().catch((error: unknown) => console.error(error));
