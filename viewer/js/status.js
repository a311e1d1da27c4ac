// @ts-check
// The sidebar's header, messages and status line: the city's name, every reported error, and
// how many layers are loaded.

/** @import { CityViewer } from "./city-viewer.js" */

import { byId } from "./dom.js";

/** @param {number} n @param {string} word */
const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

/** @param {CityViewer} viewer */
export function statusTool(viewer) {
  const name = byId("city-name", HTMLElement);
  const meta = byId("city-meta", HTMLElement);
  const messages = byId("messages", HTMLElement);
  const status = byId("load-status", HTMLElement);

  viewer.on("cityload", ({ city }) => {
    const title = city.title ?? city.name ?? "City model";
    name.textContent = title;
    document.title = `${title} · cim viewer`;
    const parts = [];
    if (city.title && city.name) parts.push(city.name);
    if (city.crs) parts.push(city.crs);
    const n = (city.layers ?? []).length;
    parts.push(plural(n, "layer"));
    meta.textContent = parts.join(" · ");
    status.textContent = `Loading ${plural(n, "layer")}…`;
  });

  viewer.on("error", ({ message }) => {
    const p = document.createElement("p");
    p.className = "message error";
    p.textContent = message;
    messages.append(p);
  });

  viewer.on("ready", () => {
    const errors = viewer.errors.length;
    status.textContent = !viewer.city
      ? "Failed to load the city"
      : plural(viewer.layers.size, "layer") + " loaded" + (errors ? ` · ${plural(errors, "error")}` : "");
  });
}
