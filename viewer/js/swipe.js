// @ts-check
// Swipe comparison (卷帘比对), the "比对" panel: a vertical divider splits the scene; each layer
// is shown on both sides, on the left only or on the right only (layer set A left, set B right),
// through CesiumJS's split rendering (`splitDirection` of a Cesium3DTileset or ImageryLayer,
// `scene.splitPosition` where the divider stands). The globe and its terrain cannot be split:
// terrain stays on both sides. When the server keeps versions (GET /api/versions answers 200;
// asked on the button's click only, as a server without versions answers 404, which the
// browser logs as an error), a layer of an earlier build can be loaded beside the current one
// (from /v/{version}/city/city.json) and shown on the right, the current one on the left.
// The panel also opens the multi-screen page (compare.html) with 2, 3 or 4 linked views.

/** @import { CityViewer, Layer } from "./city-viewer.js" */
/** @import { LayerHandle } from "./layers.js" */
/** @import { LayerSpec } from "../types/city" */

import messages from "../i18n/compare.js";
import { formatNumber, onLanguageChange, t, translatePage } from "./i18n.js";
import { loaderFor } from "./layers.js";
import { registerPanel } from "./workspace.js";

/** @typedef {"both" | "left" | "right"} Side */

export const SIDES = /** @type {const} */ (["both", "left", "right"]);
/** kinds that cannot be split (the globe's surface) */
const UNSPLITTABLE = new Set(["terrain"]);
/** the divider keeps this far from the edges (share of the width) */
const EDGE = 0.02;
const KEY_STEP = 0.02;

/**
 * A version of the city, as GET /api/versions lists it.
 * @typedef {object} VersionInfo
 * @property {string} id  "v1", ...
 * @property {number} [number]
 * @property {string} [created]
 */

/**
 * A layer of another version, loaded beside the current layers and shown on the right.
 * @typedef {object} VersionLayer
 * @property {string} version
 * @property {string} layer
 * @property {LayerHandle} handle
 */

/** @param {unknown} side @returns {side is Side} */
function isSide(side) {
  return typeof side === "string" && /** @type {readonly string[]} */ (SIDES).includes(side);
}

/** @param {Side} side */
function direction(side) {
  if (side === "left") return Cesium.SplitDirection.LEFT;
  if (side === "right") return Cesium.SplitDirection.RIGHT;
  return Cesium.SplitDirection.NONE;
}

/**
 * Put a loaded layer on a side of the divider (NONE: both sides).
 * @param {LayerHandle} handle
 * @param {Cesium.SplitDirection} dir
 */
function split(handle, dir) {
  if (handle.tileset) handle.tileset.splitDirection = dir;
  if (handle.imagery) handle.imagery.splitDirection = dir;
}

/** @param {CityViewer} viewer */
export function swipeTool(viewer) {
  const body = registerPanel({ id: "compare", title: "compare.title", order: 25, messages });
  const scene = viewer.cesium.scene;
  const container = /** @type {HTMLElement} */ (viewer.cesium.container);

  // ------------------------------------------------------------ the panel
  const toggleLabel = document.createElement("label");
  toggleLabel.className = "inline";
  const toggle = document.createElement("input");
  toggle.type = "checkbox";
  toggle.id = "swipe-toggle";
  const toggleText = document.createElement("span");
  toggleText.dataset.i18n = "compare.swipe";
  toggleLabel.append(toggle, " ", toggleText);
  const hint = document.createElement("p");
  hint.className = "muted";
  hint.dataset.i18n = "compare.swipeHint";
  const sides = document.createElement("ul");
  sides.id = "swipe-sides";
  sides.className = "swipe-sides";
  const versionButton = document.createElement("button");
  versionButton.type = "button";
  versionButton.id = "swipe-versions";
  versionButton.className = "link-button";
  versionButton.dataset.i18n = "compare.versions";
  const versionNote = document.createElement("p");
  versionNote.className = "muted";
  versionNote.dataset.i18n = "compare.noVersions";
  versionNote.hidden = true;
  const versionRow = document.createElement("label");
  versionRow.className = "swipe-version";
  versionRow.hidden = true;
  const versionText = document.createElement("span");
  versionText.className = "muted";
  versionText.dataset.i18n = "compare.version";
  const versionSelect = document.createElement("select");
  versionSelect.id = "swipe-version";
  versionRow.append(versionText, versionSelect);
  const multi = document.createElement("div");
  multi.className = "sun-row wrap";
  const multiText = document.createElement("span");
  multiText.className = "muted";
  multiText.dataset.i18n = "compare.multi";
  multi.append(multiText);
  for (const n of [2, 3, 4]) {
    const link = document.createElement("a");
    link.className = "tool-button small";
    link.href = `compare.html?views=${n}`;
    link.target = "_blank";
    link.rel = "noopener";
    link.dataset.views = String(n);
    multi.append(link);
  }
  body.append(toggleLabel, hint, sides, versionButton, versionNote, versionRow, multi);
  translatePage(body);

  // ------------------------------------------------------------ the divider
  const divider = document.createElement("div");
  divider.id = "swipe-divider";
  divider.className = "swipe-divider";
  divider.tabIndex = 0;
  divider.setAttribute("role", "separator");
  divider.setAttribute("aria-orientation", "vertical");
  divider.setAttribute("aria-valuemin", "0");
  divider.setAttribute("aria-valuemax", "100");
  divider.hidden = true;
  container.append(divider);

  /** @type {Map<string, Side>} */
  const chosen = new Map();
  /** @type {VersionInfo[]} */
  let versions = [];
  /** @type {VersionLayer | null} */
  let versionLayer = null;
  let on = false;
  /** @type {Set<() => void>} */
  const listeners = new Set();
  const changed = () => listeners.forEach((listener) => listener());

  /** Split every layer as chosen (or none, when off) and draw. */
  function apply() {
    for (const layer of viewer.layers.values()) {
      split(layer.handle, on ? direction(chosen.get(layer.id) ?? "both") : Cesium.SplitDirection.NONE);
    }
    if (versionLayer) {
      versionLayer.handle.show = on;
      split(versionLayer.handle, Cesium.SplitDirection.RIGHT);
    }
    divider.hidden = !on;
    toggle.checked = on;
    scene.requestRender();
    viewer.unsettle();
    changed();
  }

  /** @param {number} share  of the canvas width, from the left */
  function setPosition(share) {
    const x = Math.min(Math.max(Number.isFinite(share) ? share : 0.5, EDGE), 1 - EDGE);
    scene.splitPosition = x;
    divider.style.left = `${(x * 100).toFixed(3)}%`;
    divider.setAttribute("aria-valuenow", String(Math.round(x * 100)));
    divider.setAttribute("aria-valuetext", formatNumber(x, { style: "percent" }));
    scene.requestRender();
  }

  /** @param {boolean} value */
  function enable(value) {
    on = Boolean(value);
    apply();
  }

  /**
   * @param {string} id  a layer's id
   * @param {Side} side
   */
  function setSide(id, side) {
    const layer = viewer.layers.get(id);
    if (!layer || !isSide(side)) throw new Error(`swipe: no layer ${id} or no side ${String(side)} (one of ${SIDES.join(", ")})`);
    if (UNSPLITTABLE.has(layer.kind)) side = "both";
    chosen.set(id, side);
    const select = sides.querySelector(`select[data-layer="${CSS.escape(id)}"]`);
    if (select instanceof HTMLSelectElement) select.value = side;
    apply();
  }

  // ------------------------------------------------------------ a row per layer
  /** @param {Layer} layer */
  function addRow(layer) {
    const li = document.createElement("li");
    li.dataset.layer = layer.id;
    const name = document.createElement("span");
    name.className = "title";
    name.textContent = layer.spec.title ?? layer.id;
    const select = document.createElement("select");
    select.dataset.layer = layer.id;
    for (const side of SIDES) {
      const option = document.createElement("option");
      option.value = side;
      option.dataset.i18n = `compare.side.${side}`;
      option.textContent = t(`compare.side.${side}`);
      select.append(option);
    }
    select.value = chosen.get(layer.id) ?? "both";
    const fixed = UNSPLITTABLE.has(layer.kind);
    select.disabled = fixed;
    const label = () => {
      select.setAttribute("aria-label", t("compare.sideOf", { layer: layer.spec.title ?? layer.id }));
      select.title = fixed ? t("compare.sideFixed") : "";
    };
    label();
    onLanguageChange(label);
    select.addEventListener("change", () => setSide(layer.id, /** @type {Side} */ (select.value)));
    li.append(name, select);
    sides.append(li);
  }

  // ------------------------------------------------------------ versions (when the server keeps them)

  /** The server's versions, or [] when it keeps none (any answer but 200). */
  async function fetchVersions() {
    try {
      const response = await fetch(new URL("/api/versions", window.location.href), { cache: "no-cache" });
      if (!response.ok) return [];
      const doc = await response.json();
      return Array.isArray(doc?.versions) ? doc.versions.filter((/** @type {VersionInfo} */ v) => v && typeof v.id === "string") : [];
    } catch {
      return [];
    }
  }

  function renderVersions() {
    const current = versionSelect.value;
    const none = document.createElement("option");
    none.value = "";
    none.textContent = t("compare.versionNone");
    const options = [none];
    for (const v of versions) {
      for (const layer of viewer.layers.values()) {
        if (UNSPLITTABLE.has(layer.kind)) continue;
        const option = document.createElement("option");
        option.value = `${v.id}/${layer.id}`;
        option.textContent = t("compare.versionLayer", { layer: layer.spec.title ?? layer.id, version: v.id });
        options.push(option);
      }
    }
    versionSelect.replaceChildren(...options);
    versionSelect.value = current;
    versionRow.hidden = versions.length === 0;
  }

  /** Remove the loaded layer of another version. */
  function dropVersion() {
    if (!versionLayer) return;
    const { handle } = versionLayer;
    if (handle.tileset) scene.primitives.remove(handle.tileset);
    if (handle.imagery) viewer.cesium.imageryLayers.remove(handle.imagery, true);
    versionLayer = null;
    versionSelect.value = "";
    scene.requestRender();
  }

  /**
   * Show layer `layerId` of version `versionId` on the right, the current one on the left, and
   * turn the swipe on. Resolves when its tiles for the view are loaded.
   * @param {string} versionId
   * @param {string} layerId
   */
  async function compareVersion(versionId, layerId) {
    dropVersion();
    const cityUrl = new URL(`/v/${encodeURIComponent(versionId)}/city/city.json`, window.location.href).href;
    try {
      const response = await fetch(cityUrl, { cache: "no-cache" });
      if (!response.ok) throw new Error(`${cityUrl}: HTTP ${response.status}`);
      const city = await response.json();
      const spec = /** @type {LayerSpec | undefined} */ ((city.layers ?? []).find((/** @type {LayerSpec} */ l) => l.id === layerId));
      const loader = spec && !UNSPLITTABLE.has(spec.kind) ? loaderFor(spec.kind) : null;
      if (!spec || !loader) throw new Error(`${cityUrl}: no layer ${layerId} that can be split`);
      const url = new URL(spec.url, cityUrl).href;
      const handle = await loader(spec, { viewer: viewer.cesium, url, reportError: viewer.reportError.bind(viewer) });
      versionLayer = { version: versionId, layer: layerId, handle };
      versionSelect.value = `${versionId}/${layerId}`;
      if (viewer.layers.has(layerId)) chosen.set(layerId, "left");
      const select = sides.querySelector(`select[data-layer="${CSS.escape(layerId)}"]`);
      if (select instanceof HTMLSelectElement) select.value = chosen.get(layerId) ?? "both";
      enable(true);
      await viewer.whenReady();
      const tileset = handle.tileset;
      if (tileset && !tileset.tilesLoaded) {
        await new Promise((resolve) => {
          const stop = tileset.allTilesLoaded.addEventListener(() => {
            stop();
            resolve(undefined);
          });
          scene.requestRender();
        });
      }
    } catch (error) {
      viewer.reportError(t("compare.versionFailed", { version: versionId }), error);
    }
  }

  versionSelect.addEventListener("change", () => {
    const [versionId, ...rest] = versionSelect.value.split("/");
    if (!versionId) {
      dropVersion();
      apply();
    } else {
      void compareVersion(versionId, rest.join("/"));
    }
  });

  // ------------------------------------------------------------ dragging the divider
  divider.addEventListener("pointerdown", (event) => {
    divider.setPointerCapture(event.pointerId);
    event.preventDefault();
  });
  divider.addEventListener("pointermove", (event) => {
    if (!divider.hasPointerCapture(event.pointerId)) return;
    const rect = container.getBoundingClientRect();
    setPosition((event.clientX - rect.left) / rect.width);
  });
  divider.addEventListener("pointerup", (event) => {
    divider.releasePointerCapture(event.pointerId);
    changed();
  });
  divider.addEventListener("keydown", (event) => {
    const step = event.key === "ArrowLeft" ? -KEY_STEP : event.key === "ArrowRight" ? KEY_STEP : 0;
    if (!step) return;
    setPosition(scene.splitPosition + step);
    changed();
    event.preventDefault();
  });

  // ------------------------------------------------------------ wiring
  toggle.addEventListener("change", () => enable(toggle.checked));
  const label = () => {
    divider.setAttribute("aria-label", t("compare.divider"));
    for (const link of multi.querySelectorAll("a[data-views]")) {
      if (link instanceof HTMLElement) link.textContent = t("compare.multiViews", { n: Number(link.dataset.views) });
    }
    renderVersions();
  };
  label();
  onLanguageChange(label);
  setPosition(0.5);

  viewer.on("layeradded", (layer) => {
    addRow(layer);
    if (versions.length) renderVersions();
    if (on) apply();
  });
  viewer.on("reset", () => {
    dropVersion();
    chosen.clear();
    for (const select of sides.querySelectorAll("select")) select.value = "both";
    on = false;
    setPosition(0.5);
    apply();
  });

  async function refreshVersions() {
    versions = await fetchVersions();
    renderVersions();
    versionNote.hidden = versions.length > 0;
    return versions.map((v) => ({ ...v }));
  }
  versionButton.addEventListener("click", () => void refreshVersions());

  /** The swipe as the share link carries it: "" when off, else "0.25,buildings:left,...". */
  function state() {
    if (!on) return "";
    const ones = [...chosen].filter(([id, side]) => side !== "both" && viewer.layers.has(id));
    return [scene.splitPosition.toFixed(3), ...ones.map(([id, side]) => `${id}:${side}`)].join(",");
  }

  /** Show the swipe a share link carries (see `state`); "" turns it off. @param {string} text */
  function restore(text) {
    const [position, ...items] = (text ?? "").split(",").filter(Boolean);
    chosen.clear();
    for (const item of items) {
      const at = item.lastIndexOf(":");
      const id = item.slice(0, at);
      const side = item.slice(at + 1);
      if (at > 0 && isSide(side) && viewer.layers.has(id) && !UNSPLITTABLE.has(viewer.layers.get(id)?.kind ?? "")) chosen.set(id, side);
    }
    for (const select of sides.querySelectorAll("select")) select.value = chosen.get(select.dataset.layer ?? "") ?? "both";
    if (position !== undefined) setPosition(Number(position));
    enable(position !== undefined);
  }

  return {
    enable,
    state,
    restore,
    /** call `listener` when the swipe changes (on, sides, the divider let go) @param {() => void} listener */
    onChange: (listener) => {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    /** whether the swipe is on */
    enabled: () => on,
    setSide,
    /** @param {string} id */
    side: (id) => chosen.get(id) ?? "both",
    setPosition,
    position: () => scene.splitPosition,
    /** the server's versions (empty when it keeps none) */
    versions: () => versions.map((v) => ({ ...v })),
    /** ask the server for its versions (the panel's button); resolves to them */
    refreshVersions,
    /** whether the other version's layer (if any) has the tiles the view needs */
    versionTilesLoaded: () => !versionLayer?.handle.tileset || versionLayer.handle.tileset.tilesLoaded,
    compareVersion,
    /** the layer of another version shown on the right, if any */
    versionLayer: () => (versionLayer ? { version: versionLayer.version, layer: versionLayer.layer } : null),
    dropVersion: () => {
      dropVersion();
      apply();
    },
  };
}
