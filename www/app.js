// The demo page: loads the SDK's wasm core and shows that it answers.
import { ready, version, buildChatChannelName } from "@domvia/realtime";

const status = document.getElementById("sdk-status");
const versionField = document.getElementById("sdk-version");
const roomInput = document.getElementById("room-id");
const channelResult = document.getElementById("channel-result");

function showChannelName() {
  try {
    channelResult.textContent = buildChatChannelName(roomInput.value);
    channelResult.dataset.state = "ok";
  } catch (error) {
    channelResult.textContent = `${error.code}: ${error.message}`;
    channelResult.dataset.state = "error";
  }
}

try {
  await ready();
  versionField.textContent = version();
  status.textContent = "SDK loaded";
  status.dataset.state = "ready";
  roomInput.addEventListener("input", showChannelName);
  document.getElementById("channel-form").addEventListener("submit", (event) => event.preventDefault());
  showChannelName();
} catch (error) {
  status.textContent = `The SDK failed to load: ${error.message}`;
  status.dataset.state = "error";
}
