// @ts-check
// Feature search: a box in the side panel over the server's /api/search (SQLite FTS5).
// Picking a result flies to a point inside the feature's footprint (the result's `anchor`; an
// L-shaped or courtyard building's centre lies outside it) and selects the feature by its id in
// every loaded tile, whatever is under the screen centre; a feature in no loaded tile shows the
// result's attributes from the index.

/** @import { CityViewer } from "./city-viewer.js" */
/** @import { SearchResult } from "../types/city" */

import { byId } from "./dom.js";
import { t } from "./i18n.js";
import { localized } from "./properties.js";

const DEBOUNCE_MS = 200;

/** @param {CityViewer} viewer */
export function searchTool(viewer) {
  const panel = byId("search-panel", HTMLElement);
  const input = byId("search-input", HTMLInputElement);
  const list = byId("search-results", HTMLOListElement);
  /** @type {number | undefined} */
  let timer;
  let generation = 0;

  /**
   * @param {string} text
   * @returns {Promise<SearchResult[]>}
   */
  async function query(text) {
    const api = viewer.city?.search?.api;
    if (!api) return [];
    const url = new URL(api, window.location.href);
    url.searchParams.set("q", text);
    url.searchParams.set("limit", "12");
    const response = await fetch(url);
    if (!response.ok) throw new Error(`search: HTTP ${response.status}`);
    return (await response.json()).results;
  }

  /** @param {SearchResult[]} results */
  function show(results) {
    const items = results.map((r) => {
      const li = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.className = "search-hit";
      button.dataset.id = r.id;
      const title = document.createElement("span");
      title.className = "hit-title";
      title.textContent = String(localized(r.properties, "name") || r.title);
      const sub = document.createElement("span");
      sub.className = "hit-sub muted";
      sub.textContent = String(localized(r.properties, "address") ?? r.id);
      button.append(title, sub);
      button.addEventListener("click", () => showResult(r));
      li.append(button);
      return li;
    });
    if (!items.length) {
      const li = document.createElement("li");
      li.className = "muted";
      li.dataset.i18n = "search.noMatch";
      li.textContent = t("search.noMatch");
      items.push(li);
    }
    list.replaceChildren(...items);
  }

  /** @type {Set<(text: string) => void>} */
  const changeListeners = new Set();

  /**
   * Search, list the results and return them.
   * @param {string} text
   */
  async function run(text) {
    const mine = ++generation;
    if (input.value !== text) input.value = text;
    for (const listener of changeListeners) listener(text);
    if (!text.trim()) {
      list.replaceChildren();
      return [];
    }
    const results = await query(text);
    if (mine === generation) show(results);
    return results;
  }

  /**
   * Fly to a result (over a point inside its footprint) and select it by id.
   * @param {SearchResult} result
   */
  async function showResult(result) {
    const [lon, lat] = Array.isArray(result.anchor) && result.anchor.length >= 2 ? result.anchor : [result.lon, result.lat];
    viewer.lookAt(lon, lat, result.top ?? 0, 150);
    await viewer.whenReady();
    viewer.selectById(result.layer, String(result.id), result.properties);
    return viewer.selection?.properties ?? null;
  }

  viewer.on("cityload", ({ city }) => {
    panel.hidden = !city.search;
  });
  viewer.on("reset", () => {
    window.clearTimeout(timer);
    generation++;
    input.value = "";
    list.replaceChildren();
    for (const listener of changeListeners) listener("");
  });

  input.addEventListener("input", () => {
    window.clearTimeout(timer);
    timer = window.setTimeout(() => run(input.value).catch((e) => viewer.reportError(t("search.failed"), e)), DEBOUNCE_MS);
  });
  input.addEventListener("keydown", (event) => {
    const first = list.querySelector("button.search-hit");
    if (event.key === "Enter" && first instanceof HTMLButtonElement) first.click();
  });
  return {
    run,
    showResult,
    /** the search text shown */
    text: () => input.value.trim(),
    /**
     * Call `listener` with the text of every search run.
     * @param {(text: string) => void} listener
     */
    onChange(listener) {
      changeListeners.add(listener);
    },
  };
}
