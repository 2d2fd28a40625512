import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { App } from "./App";
import { fetchBrokerConfig, readParams } from "./session";

const params = readParams(location.search);
const broker = await fetchBrokerConfig(params.server);
createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <App params={params} broker={broker} />
  </StrictMode>,
);
