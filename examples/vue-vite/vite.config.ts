import { defineConfig } from "vite";
import vue from "@vitejs/plugin-vue";

export default defineConfig({
  plugins: [vue()],
  // The DomVia packages load their .wasm from beside their own modules
  // (new URL("…_bg.wasm", import.meta.url)). Vite's dev-time dependency
  // pre-bundling moves the modules and not the files, so keep them out of it.
  optimizeDeps: {
    exclude: ["@domvia/realtime", "@domvia/realtime-chat", "@domvia/realtime-e2ee", "@domvia/realtime-vue"],
  },
});
