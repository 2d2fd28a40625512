// Small DOM helpers shared by the app and the conversation view. Every string
// that may come from another user goes through textContent (text children of
// `h`), never innerHTML; the only markup parsed is the constant icons below.

/** Creates an element: `h("button", { class: "x", onclick }, "text", child)`. */
export function h(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) element.addEventListener(key.slice(2), value);
    else if (key === "class") element.className = value;
    else if (key === "dataset") Object.assign(element.dataset, value);
    else if (key in element && typeof value !== "string") element[key] = value;
    else element.setAttribute(key, value === true ? "" : value);
  }
  element.append(...children.flat().filter((child) => child !== null && child !== undefined && child !== false));
  return element;
}

/**
 * Makes `parent`'s children exactly `items`, in order, without touching a child
 * that stays: lists here are redrawn when a poll or a newer search answers, and
 * a row removed and inserted again between mousedown and mouseup loses the
 * click (seen in Firefox).
 */
export function placeChildren(parent, items) {
  const keep = new Set(items);
  for (const child of [...parent.children]) if (!keep.has(child)) child.remove();
  items.forEach((item, index) => {
    const at = parent.children[index];
    if (at !== item) parent.insertBefore(item, at ?? null);
  });
}

/**
 * The list items for `entries` ([key, freshly built content]), one kept per key
 * in `rows` across redraws (for placeChildren): a kept item's content element
 * stays too, and takes the fresh one's attributes and children only when they
 * differ. Its listeners stay the first ones, so they must depend on the key only.
 * Keys no longer listed are forgotten.
 */
export function keptItems(rows, entries) {
  const items = entries.map(([key, fresh]) => {
    const row = rows.get(key);
    if (!row) {
      const item = h("li", {}, fresh);
      rows.set(key, { item, content: fresh });
      return item;
    }
    const { content } = row;
    if (!content.isEqualNode(fresh)) {
      for (const name of content.getAttributeNames()) if (!fresh.hasAttribute(name)) content.removeAttribute(name);
      for (const name of fresh.getAttributeNames()) content.setAttribute(name, fresh.getAttribute(name));
      content.replaceChildren(...fresh.childNodes);
    }
    return row.item;
  });
  const listed = new Set(entries.map(([key]) => key));
  for (const key of rows.keys()) if (!listed.has(key)) rows.delete(key);
  return items;
}

// Constant, trusted SVG (24x24, stroked with currentColor).
const ICONS = {
  clock: '<circle cx="12" cy="12" r="8.5"/><path d="M12 7.5V12l3 2"/>',
  check: '<path d="M5 12.5l4.5 4.5L19 7.5"/>',
  alert: '<circle cx="12" cy="12" r="8.5"/><path d="M12 7.5v5.5M12 16.2v.3"/>',
  plus: '<path d="M12 5v14M5 12h14"/>',
  back: '<path d="M15 5l-7 7 7 7"/>',
  send: '<path d="M4.5 12L20 4.5 15.5 20l-3.5-6.5z"/><path d="M12 13.5l8-9"/>',
  people: '<circle cx="9" cy="9" r="3.2"/><path d="M3.5 19c.6-3.2 2.8-5 5.5-5s4.9 1.8 5.5 5"/><circle cx="17" cy="8" r="2.5"/><path d="M16.5 13.2c2.2.2 3.6 1.8 4 4.3"/>',
  leave: '<path d="M14 5h4.5v14H14"/><path d="M10 8l-4 4 4 4M6 12h9"/>',
  close: '<path d="M6 6l12 12M18 6L6 18"/>',
  down: '<path d="M12 5v14M6 13l6 6 6-6"/>',
  lock: '<rect x="5" y="10.5" width="14" height="9.5" rx="2"/><path d="M8.5 10.5V8a3.5 3.5 0 017 0v2.5"/>',
};

/** An inline icon, hidden from assistive technology (its button carries the label). */
export function icon(name) {
  const span = document.createElement("span");
  span.className = `icon icon-${name}`;
  span.setAttribute("aria-hidden", "true");
  span.innerHTML = `<svg viewBox="0 0 24 24" width="18" height="18" fill="none" stroke="currentColor" stroke-width="1.8" stroke-linecap="round" stroke-linejoin="round">${ICONS[name]}</svg>`;
  return span;
}

/** The mark of an end-to-end encrypted room: a lock that says so to assistive technology. */
export function encryptedMark(props = {}) {
  return h("span", { class: "lock", role: "img", "aria-label": "End-to-end encrypted", title: "End-to-end encrypted", ...props }, icon("lock"));
}

/** Initials on a color picked from the id, so a person keeps one color everywhere. */
export function avatar(id, name, size = "md") {
  let hash = 0;
  for (const char of id) hash = (hash * 31 + char.codePointAt(0)) >>> 0;
  const initials = (name || "?").trim().split(/\s+/).slice(0, 2).map((word) => [...word][0] ?? "").join("").toUpperCase();
  return h("span", { class: `avatar avatar-${size}`, style: `--hue: ${hash % 360}`, "aria-hidden": "true" }, initials || "?");
}

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "numeric", minute: "2-digit" });
const dateFormat = new Intl.DateTimeFormat(undefined, { weekday: "long", month: "long", day: "numeric" });
const shortDateFormat = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" });

export const formatTime = (ms) => timeFormat.format(ms);

/** "Today", "Yesterday", or the date: the label of a day divider. */
export function formatDay(ms) {
  const day = new Date(ms).setHours(0, 0, 0, 0);
  const today = new Date().setHours(0, 0, 0, 0);
  if (day === today) return "Today";
  if (today - day <= 86_400_000 + 3_600_000 && today > day) return "Yesterday";
  return dateFormat.format(ms);
}

/** The time in a room list: the time today, the date before. */
export function formatListTime(ms) {
  return new Date(ms).toDateString() === new Date().toDateString() ? timeFormat.format(ms) : shortDateFormat.format(ms);
}

/** "Ada", "Ada and Bob", "Ada, Bob and Cy", "Ada, Bob and 3 others". */
export function listNames(names) {
  if (names.length <= 1) return names[0] ?? "";
  if (names.length > 3) return `${names.slice(0, 2).join(", ")} and ${names.length - 2} others`;
  return `${names.slice(0, -1).join(", ")} and ${names.at(-1)}`;
}
