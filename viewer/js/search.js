// @ts-check
// Feature search: a box in the side panel over the server's /api/search (SQLite FTS5).
// Picking a result flies to the feature and selects it; if another feature is in the way,
// the panel still shows the result's attributes from the index.

/** @import { CityViewer } from "./city-viewer.js" */
/** @import { SearchResult } from "../types/city" */

import { byId } from "./dom.js";

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
      title.textContent = r.title;
      const sub = document.createElement("span");
      sub.className = "hit-sub muted";
      sub.textContent = String(r.properties?.address ?? r.id);
      button.append(title, sub);
      button.addEventListener("click", () => showResult(r));
      li.append(button);
      return li;
    });
    if (!items.length) {
      const li = document.createElement("li");
      li.className = "muted";
      li.textContent = "No match";
      items.push(li);
    }
    list.replaceChildren(...items);
  }

  /**
   * Search, list the results and return them.
   * @param {string} text
   */
  async function run(text) {
    const mine = ++generation;
    if (!text.trim()) {
      list.replaceChildren();
      return [];
    }
    const results = await query(text);
    if (mine === generation) show(results);
    return results;
  }

  /**
   * Fly to a result, then select what is under the camera; if that is another feature (or
   * nothing), select the result's own attributes from the index.
   * @param {SearchResult} result
   */
  async function showResult(result) {
    viewer.lookAt(result.lon, result.lat, result.top ?? 0, 150);
    await viewer.whenReady();
    const canvas = viewer.cesium.scene.canvas;
    const props = viewer.select(canvas.clientWidth / 2, canvas.clientHeight / 2);
    const idKey = viewer.layers.get(result.layer)?.spec.id_property ?? "id";
    if (!props || String(props[idKey]) !== String(result.id)) {
      viewer.selectProperties(result.layer, result.properties);
    }
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
  });

  input.addEventListener("input", () => {
    window.clearTimeout(timer);
    timer = window.setTimeout(() => run(input.value).catch((e) => viewer.reportError("Search failed", e)), DEBOUNCE_MS);
  });
  input.addEventListener("keydown", (event) => {
    const first = list.querySelector("button.search-hit");
    if (event.key === "Enter" && first instanceof HTMLButtonElement) first.click();
  });
  return { run, showResult };
}
