import { createApp } from "vue";
import { createDomVia } from "@domvia/realtime-vue";
import App from "./App.vue";
import { fetchBrokerConfig, readParams, signIn } from "./session";

const params = readParams(location.search);
const broker = await fetchBrokerConfig(params.server);
const headers = signIn(params.server, params.name);

createApp(App, { params })
  .use(
    createDomVia({
      options: {
        key: broker.key,
        host: broker.host,
        port: broker.port,
        forceTLS: broker.forceTLS,
        authEndpoint: `${params.server}/realtime/auth`,
        userAuthentication: { endpoint: `${params.server}/realtime/user-auth` },
        headersProvider: headers,
        clientEvents: true,
      },
      roomDefaults: { api: { baseUrl: params.server, headersProvider: headers } },
    }),
  )
  .mount("#app");
