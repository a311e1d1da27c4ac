// @ts-check
// Share links and bookmarks. The view lives in the page's URL hash, kept up to date as it
// changes: the camera, the layers shown, each layer's transparency, the active search and the
// selected feature (by layer and id). Opening a link restores that view once the city has
// loaded (and again when the hash is edited). A bookmark is such a view with a name, kept in
// localStorage per city.
//
//   #cam=lon,lat,height,heading,pitch,roll&on=terrain,buildings&alpha=buildings:0.5&q=text&sel=buildings/B123
//
// Degrees, metres, degrees; `on` lists every layer shown (the others are hidden); `alpha` the
// layers that are not opaque (1 - transparency); `q` the search box's text; `query` the query
// panel's filters (its /api/query string); `sel` is layer id "/" feature id; `swipe` the swipe
// comparison when it is on (the divider's place, then the layers shown on one side only:
// `swipe=0.25,buildings:left,imagery:right`).

/** @import { CityViewer } from "./city-viewer.js" */

import { byId } from "./dom.js";
import { formatDate, onLanguageChange, t } from "./i18n.js";

const BOOKMARKS_KEY = "cim.bookmarks";
const WRITE_DELAY_MS = 250;

/**
 * A view, as the URL hash carries it.
 * @typedef {object} ViewState
 * @property {number[] | null} camera  [lon, lat, height, heading, pitch, roll]
 * @property {string[] | null} visible  ids of the layers shown; null: as city.json says
 * @property {Record<string, number>} opacity  layer id -> opacity, for layers below 1
 * @property {string} query  the search text
 * @property {string} [panel]  the query panel's filters, as a query string
 * @property {{ layer: string, id: string } | null} selection
 * @property {string} [swipe]  the swipe comparison, "" when off
 */

/**
 * @typedef {object} Bookmark
 * @property {string} name
 * @property {string} city
 * @property {string} hash  without the leading "#"
 * @property {string} created  ISO time
 */

/**
 * Hooks the share tool needs from others (the search panel, which main.js installs first).
 * @typedef {object} ShareHooks
 * @property {() => string} queryText
 * @property {(text: string) => Promise<unknown>} runQuery
 * @property {() => string} [panelQuery]  the query panel's filters
 * @property {(qs: string) => Promise<unknown>} [restorePanelQuery]
 * @property {() => string} [swipeState]  the swipe comparison (js/swipe.js)
 * @property {(text: string) => void} [restoreSwipe]
 */

/** @param {number} v @param {number} digits */
const fixed = (v, digits) => Number(v.toFixed(digits));

/**
 * @param {ViewState} state
 * @returns {string} the hash, without "#"
 */
export function encodeState(state) {
  const params = new URLSearchParams();
  if (state.camera) {
    const [lon, lat, h, heading, pitch, roll] = state.camera;
    params.set("cam", [fixed(lon, 7), fixed(lat, 7), fixed(h, 2), fixed(heading, 2), fixed(pitch, 2), fixed(roll, 2)].join(","));
  }
  if (state.visible) params.set("on", state.visible.join(","));
  const alpha = Object.entries(state.opacity).filter(([, a]) => a < 1);
  if (alpha.length) params.set("alpha", alpha.map(([id, a]) => `${id}:${fixed(a, 2)}`).join(","));
  if (state.query) params.set("q", state.query);
  if (state.panel) params.set("query", state.panel);
  if (state.selection) params.set("sel", `${state.selection.layer}/${state.selection.id}`);
  if (state.swipe) params.set("swipe", state.swipe);
  return params.toString();
}

/**
 * @param {string} hash  with or without "#"
 * @returns {ViewState}
 */
export function decodeState(hash) {
  const params = new URLSearchParams(hash.replace(/^#/, ""));
  const cam = (params.get("cam") ?? "").split(",").map(Number);
  /** @type {Record<string, number>} */
  const opacity = {};
  for (const item of (params.get("alpha") ?? "").split(",")) {
    const at = item.lastIndexOf(":");
    const a = Number(item.slice(at + 1));
    if (at > 0 && Number.isFinite(a)) opacity[item.slice(0, at)] = Math.min(Math.max(a, 0), 1);
  }
  const sel = params.get("sel") ?? "";
  const slash = sel.indexOf("/");
  return {
    camera: cam.length === 6 && cam.every(Number.isFinite) ? cam : null,
    visible: params.has("on") ? (params.get("on") ?? "").split(",").filter(Boolean) : null,
    opacity,
    query: params.get("q") ?? "",
    panel: params.get("query") ?? "",
    selection: slash > 0 ? { layer: sel.slice(0, slash), id: sel.slice(slash + 1) } : null,
    swipe: params.get("swipe") ?? "",
  };
}

/**
 * @param {CityViewer} viewer
 * @param {ShareHooks} hooks
 */
export function shareTool(viewer, hooks) {
  const copyButton = byId("share-copy", HTMLButtonElement);
  const addButton = byId("bookmark-add", HTMLButtonElement);
  const linkField = byId("share-link", HTMLInputElement);
  const list = byId("bookmark-list", HTMLOListElement);
  /** true while a link is being applied: the hash is not rewritten meanwhile */
  let restoring = false;
  /** the city is loaded and the first view (the link's, or home) is shown */
  let started = false;
  /** @type {number | undefined} */
  let timer;

  /** @returns {ViewState} */
  function currentState() {
    const camera = viewer.cesium.camera;
    const c = camera.positionCartographic;
    const deg = Cesium.Math.toDegrees;
    const visible = [...viewer.layers.values()].filter((l) => l.handle.show).map((l) => l.id);
    /** @type {Record<string, number>} */
    const opacity = {};
    for (const l of viewer.layers.values()) if (l.handle.opacity < 1) opacity[l.id] = l.handle.opacity;
    const sel = viewer.selection;
    return {
      camera: [deg(c.longitude), deg(c.latitude), c.height, deg(camera.heading), deg(camera.pitch), deg(camera.roll)],
      visible,
      opacity,
      query: hooks.queryText(),
      panel: hooks.panelQuery?.() ?? "",
      selection: sel && sel.layerId && sel.id !== null ? { layer: sel.layerId, id: sel.id } : null,
      swipe: hooks.swipeState?.() ?? "",
    };
  }

  /** The link to the current view. */
  function link() {
    const url = new URL(window.location.href);
    url.hash = encodeState(currentState());
    return url.href;
  }

  function writeNow() {
    window.clearTimeout(timer);
    if (restoring || !started) return;
    const hash = encodeState(currentState());
    if (window.location.hash.replace(/^#/, "") !== hash) window.history.replaceState(null, "", `#${hash}`);
    linkField.value = window.location.href;
  }

  function write() {
    window.clearTimeout(timer);
    timer = window.setTimeout(writeNow, WRITE_DELAY_MS);
  }

  /**
   * Show a view: layers, transparency, camera, search, selection. Resolves when it is shown.
   * @param {ViewState} state
   */
  async function apply(state) {
    restoring = true;
    try {
      for (const layer of viewer.layers.values()) {
        if (state.visible) {
          const show = state.visible.includes(layer.id);
          if (layer.handle.show !== show) viewer.setLayerVisible(layer.id, show);
        }
        const opacity = state.opacity[layer.id] ?? 1;
        if (layer.handle.opacity !== opacity) viewer.setLayerOpacity(layer.id, opacity);
      }
      if (hooks.restoreSwipe && (state.swipe ?? "") !== (hooks.swipeState?.() ?? "")) hooks.restoreSwipe(state.swipe ?? "");
      if (state.camera) {
        const [lon, lat, h, heading, pitch, roll] = state.camera;
        viewer.cesium.camera.setView({
          destination: Cesium.Cartesian3.fromDegrees(lon, lat, h),
          orientation: { heading: Cesium.Math.toRadians(heading), pitch: Cesium.Math.toRadians(pitch), roll: Cesium.Math.toRadians(roll) },
        });
        viewer.unsettle();
      }
      if (state.query !== hooks.queryText()) await hooks.runQuery(state.query);
      if (hooks.restorePanelQuery && (state.panel ?? "") !== (hooks.panelQuery?.() ?? "")) await hooks.restorePanelQuery(state.panel ?? "");
      await viewer.whenReady();
      if (state.selection && viewer.layers.has(state.selection.layer)) {
        const { layer, id } = state.selection;
        viewer.selectById(layer, id);
        // in no loaded tile: its attributes from the search index
        if (!viewer.selection?.feature) viewer.selectById(layer, id, await indexedProperties(layer, id));
      } else if (!state.selection && viewer.selection) {
        viewer.clearSelection();
      }
    } finally {
      restoring = false;
    }
    writeNow();
  }

  /**
   * A feature's attributes from the city's search index (undefined when it has none or the
   * index does not know the feature).
   * @param {string} layer
   * @param {string} id
   */
  async function indexedProperties(layer, id) {
    const api = viewer.city?.search?.api;
    if (!api) return undefined;
    try {
      const url = new URL(api, window.location.href);
      url.searchParams.set("q", id);
      url.searchParams.set("limit", "20");
      const response = await fetch(url);
      if (!response.ok) return undefined;
      const body = await response.json();
      const hit = (body.results ?? []).find((/** @type {{ layer: string, id: string }} */ r) => r.layer === layer && String(r.id) === id);
      return hit?.properties;
    } catch {
      return undefined;
    }
  }

  // ------------------------------------------------------------ bookmarks

  function cityName() {
    return viewer.city?.name ?? "";
  }

  /** @returns {Bookmark[]} every city's */
  function allBookmarks() {
    try {
      const raw = JSON.parse(window.localStorage.getItem(BOOKMARKS_KEY) ?? "[]");
      return Array.isArray(raw) ? raw.filter((b) => b && typeof b.hash === "string" && typeof b.name === "string") : [];
    } catch {
      return [];
    }
  }

  /** @param {Bookmark[]} bookmarks */
  function saveBookmarks(bookmarks) {
    try {
      window.localStorage.setItem(BOOKMARKS_KEY, JSON.stringify(bookmarks));
    } catch (error) {
      viewer.reportError(t("bookmarks.notSaved"), error);
    }
  }

  /** This city's bookmarks, oldest first. */
  function bookmarks() {
    return allBookmarks().filter((b) => b.city === cityName());
  }

  /**
   * Bookmark the current view.
   * @param {string} [name]  default: the date and time
   * @returns {Bookmark}
   */
  function addBookmark(name) {
    const now = new Date();
    const bookmark = { name: name?.trim() || formatDate(now, true), city: cityName(), hash: encodeState(currentState()), created: now.toISOString() };
    saveBookmarks([...allBookmarks(), bookmark]);
    renderBookmarks();
    return bookmark;
  }

  /** @param {number} index  in this city's list */
  function removeBookmark(index) {
    const mine = bookmarks()[index];
    if (!mine) return;
    saveBookmarks(allBookmarks().filter((b) => b !== mine && !(b.city === mine.city && b.created === mine.created && b.hash === mine.hash)));
    renderBookmarks();
  }

  /** @param {number} index */
  async function openBookmark(index) {
    const mine = bookmarks()[index];
    if (mine) await apply(decodeState(mine.hash));
  }

  function renderBookmarks() {
    const items = bookmarks().map((b, i) => {
      const li = document.createElement("li");
      const go = document.createElement("button");
      go.type = "button";
      go.className = "link-button bookmark-open";
      go.textContent = b.name;
      go.title = t("bookmarks.open");
      go.addEventListener("click", () => void openBookmark(i));
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "icon-button bookmark-remove";
      remove.textContent = "×";
      remove.title = t("bookmarks.remove");
      remove.setAttribute("aria-label", t("bookmarks.removeNamed", { name: b.name }));
      remove.addEventListener("click", () => removeBookmark(i));
      li.append(go, remove);
      return li;
    });
    if (!items.length) {
      const li = document.createElement("li");
      li.className = "muted";
      li.textContent = t("bookmarks.none");
      items.push(li);
    }
    list.replaceChildren(...items);
  }

  // ------------------------------------------------------------ wiring

  copyButton.addEventListener("click", async () => {
    writeNow();
    linkField.value = link();
    linkField.select();
    try {
      await navigator.clipboard.writeText(linkField.value);
      copyButton.textContent = t("bookmarks.copied");
      window.setTimeout(() => (copyButton.textContent = t("bookmarks.copyLink")), 1500);
    } catch {
      // no clipboard (a page not in focus, say): the link stays selected in the field
    }
  });
  addButton.addEventListener("click", () => addBookmark());

  for (const event of /** @type {const} */ (["cameramove", "layervisibility", "layeropacity", "select", "deselect"])) viewer.on(event, write);
  viewer.on("cityload", renderBookmarks);
  onLanguageChange(renderBookmarks);

  // the first time the city is ready: show the link's view, if any
  const stop = viewer.on("ready", () => {
    stop();
    const state = decodeState(window.location.hash);
    started = true;
    if (window.location.hash.length > 1) {
      void apply(state).catch((error) => viewer.reportError(t("bookmarks.restoreFailed"), error));
    } else {
      writeNow();
    }
  });
  window.addEventListener("hashchange", () => {
    if (!started) return;
    const hash = window.location.hash.replace(/^#/, "");
    if (hash !== encodeState(currentState())) void apply(decodeState(hash));
  });

  return { link, currentState, apply, decode: decodeState, encode: encodeState, addBookmark, removeBookmark, openBookmark, bookmarks, update: writeNow };
}
