// @ts-check
// The sidebar's header, messages and status line: the city's name, every reported error, and
// how many layers are loaded.

/** @import { CityViewer } from "./city-viewer.js" */

import { byId } from "./dom.js";
import { onLanguageChange, t } from "./i18n.js";

/** @param {CityViewer} viewer */
export function statusTool(viewer) {
  const name = byId("city-name", HTMLElement);
  const meta = byId("city-meta", HTMLElement);
  const messages = byId("messages", HTMLElement);
  const status = byId("load-status", HTMLElement);
  // the city's name is data, not a message: it no longer follows the catalogue
  delete name.dataset.i18n;
  delete status.dataset.i18n;
  let started = false;

  function render() {
    const city = viewer.city;
    if (city) {
      const title = city.title ?? city.name ?? t("city.defaultTitle");
      name.textContent = title;
      document.title = t("app.pageTitle", { city: title });
      const parts = [];
      if (city.title && city.name) parts.push(city.name);
      if (city.crs) parts.push(city.crs);
      parts.push(t("status.layers", { n: (city.layers ?? []).length }));
      meta.textContent = parts.join(" · ");
    } else {
      name.textContent = t("city.defaultTitle");
    }
    if (!started) {
      status.textContent = t("status.loading");
    } else if (!viewer.ready && !viewer.layers.size) {
      status.textContent = t("status.loadingLayers", { n: (city?.layers ?? []).length });
    } else if (!city) {
      status.textContent = t("status.failed");
    } else {
      const errors = viewer.errors.length;
      status.textContent = t("status.loaded", { n: viewer.layers.size }) + (errors ? ` · ${t("status.errors", { n: errors })}` : "");
    }
  }

  viewer.on("cityload", () => {
    started = true;
    render();
  });

  viewer.on("error", ({ message }) => {
    const p = document.createElement("p");
    p.className = "message error";
    p.textContent = message;
    messages.append(p);
  });

  viewer.on("ready", () => {
    started = true;
    render();
  });
  onLanguageChange(render);
  render();
}
