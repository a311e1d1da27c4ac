// @ts-check
// The one viewer object (after Potree's viewer.js and Cesium's viewer.extend(mixin)): it owns the
// Cesium.Viewer, the loaded city.json, the loaded layers, the selection and readiness, and raises
// events. Tools are functions `(viewer) => api` installed with `install`; they subscribe to
// events and keep their state to themselves. This module touches no DOM outside its container:
// every panel is a tool.

/** @import { City, LayerSpec } from "../types/city" */
/** @import { LayerHandle } from "./layers.js" */
/** @import { PlainValue } from "./properties.js" */

import { EventDispatcher } from "./events.js";
import { t } from "./i18n.js";
import { loaderFor } from "./layers.js";
import { featureProperties, isTileFeature } from "./properties.js";

/** The selection's colour, as the eye should see it (sRGB). */
export const HIGHLIGHT_CSS = "#f2b33d";
// sRGB as Cesium wants it: a feature's colour multiplies the fragment after lighting and the
// screen encoding (CPUStylingStage follows LightingStage), so a white surface shows it exactly.
const HIGHLIGHT = Cesium.Color.fromCssColorString(HIGHLIGHT_CSS);
/** Query results' colour (sRGB), beside the selection's. */
export const RESULT_CSS = "#4fc3f7";
const RESULT = Cesium.Color.fromCssColorString(RESULT_CSS);
const GLOBE_COLOR = Cesium.Color.fromCssColorString("#4a5057");

/**
 * A loaded layer.
 * @typedef {object} Layer
 * @property {string} id
 * @property {string} kind
 * @property {LayerSpec} spec  its city.json entry
 * @property {LayerHandle} handle
 */

/**
 * @typedef {object} Selection
 * @property {string | null} layerId
 * @property {Record<string, PlainValue>} properties
 * @property {Cesium.Cesium3DTileFeature | null} feature  null when selected from the search index
 * @property {string | null} id  the feature's id (the layer's id_property), when it has one
 */

/**
 * A left click in the scene. `feature` is picked on first read (a pick is a render pass).
 * @typedef {object} SceneClick
 * @property {number} x  canvas pixels
 * @property {number} y
 * @property {Cesium.Cesium3DTileFeature | null} feature
 * @property {() => void} preventDefault  the click is consumed: the viewer does not select
 */

/**
 * Every event and what its listeners receive.
 * @typedef {object} CityViewerEvents
 * @property {{ city: City }} cityload  city.json is loaded; its layers are loading
 * @property {Layer} layeradded  raised in city.json order
 * @property {{ spec: LayerSpec, reason: "unsupported" | "failed" }} layerfailed
 * @property {{ id: string, show: boolean }} layervisibility
 * @property {{ id: string, opacity: number }} layeropacity
 * @property {Selection} select
 * @property {{}} deselect
 * @property {SceneClick} click
 * @property {{}} cameramove  the camera came to rest
 * @property {{}} ready  every visible layer has loaded what the view needs
 * @property {{}} reset  tools return to their initial state
 * @property {{ message: string }} error
 */

/**
 * @template T
 * @typedef {(viewer: CityViewer) => T} Tool
 */

/** @extends {EventDispatcher<CityViewerEvents>} */
export class CityViewer extends EventDispatcher {
  /** @type {City | null} */
  city = null;
  /** @type {Map<string, Layer>} */
  layers = new Map();
  /** @type {Selection | null} */
  selection = null;
  /** true once loading has finished and every visible layer has the tiles the view needs */
  ready = false;
  /** frames rendered so far (tests wait on it after a change) */
  frames = 0;
  /** @type {string[]} */
  errors = [];
  /** the city.json URL that layer URLs are relative to */
  baseUrl = window.location.href;

  #loadingDone = false;
  #settleFrames = 0;
  /** @type {number | null} */
  #settleTimer = null;
  /** @type {(() => void)[]} */
  #readyWaiters = [];
  /** the highlighted features (one picked, or every loaded tile's copy of one id) and their own colours */
  /** @type {Map<Cesium.Cesium3DTileFeature, Cesium.Color>} */
  #highlighted = new Map();
  /** stops highlighting the selected id in tiles that load later */
  /** @type {(() => void) | null} */
  #stopFollowing = null;
  /** query results shown in the scene: their features and own colours, and the tile listeners */
  /** @type {Map<Cesium.Cesium3DTileFeature, Cesium.Color>} */
  #marked = new Map();
  /** @type {(() => void)[]} */
  #stopMarking = [];

  /** @param {string | Element} container */
  constructor(container) {
    // a tool that fails on an event is reported like any error, except on "error" itself
    super((type, error) => (type === "error" ? console.error(error) : this.reportError(t("error.tool", { event: String(type) }), error)));
    // CesiumJS's Apache-2.0 licence asks for no logo; the default credit is the Cesium ion logo,
    // and ion is never used here: credit CesiumJS in words instead
    Cesium.CreditDisplay.cesiumCredit = new Cesium.Credit('<a href="https://cesium.com/platform/cesiumjs/" target="_blank" rel="noopener noreferrer">CesiumJS</a>', true);
    this.cesium = new Cesium.Viewer(container, {
      baseLayer: false,
      geocoder: false,
      baseLayerPicker: false,
      homeButton: true,
      timeline: false,
      animation: false,
      navigationHelpButton: false,
      sceneModePicker: false,
      fullscreenButton: false,
      infoBox: false,
      selectionIndicator: false,
      requestRenderMode: true,
      maximumRenderTimeChange: Infinity,
      terrainProvider: new Cesium.EllipsoidTerrainProvider(),
    });
    const scene = this.cesium.scene;
    scene.globe.baseColor = GLOBE_COLOR;
    scene.globe.showGroundAtmosphere = false;
    scene.backgroundColor = Cesium.Color.fromCssColorString("#101418");
    this.cesium.clock.shouldAnimate = false;

    this.cesium.homeButton.viewModel.command.beforeExecute.addEventListener((/** @type {{ cancel: boolean }} */ e) => {
      e.cancel = true;
      this.flyHome(1.5);
    });
    scene.postRender.addEventListener(() => this.#onPostRender());
    scene.camera.moveEnd.addEventListener(() => this.emit("cameramove", {}));
    const handler = new Cesium.ScreenSpaceEventHandler(scene.canvas);
    handler.setInputAction(
      (/** @type {Cesium.ScreenSpaceEventHandler.PositionedEvent} */ click) => this.#onClick(click.position),
      Cesium.ScreenSpaceEventType.LEFT_CLICK,
    );
  }

  // ------------------------------------------------------------ tools

  /**
   * Install a tool: call it with this viewer and return what it returns (its scripting API).
   * @template T
   * @param {Tool<T>} tool
   * @returns {T}
   */
  install(tool) {
    return tool(this);
  }

  // ------------------------------------------------------------ loading

  /**
   * Load city.json and every layer it lists. Never rejects: failures are reported.
   * @param {string} url
   * @param {City} [city]  the content of `url`, when the caller has it already (linked views
   *   share one fetch); layer URLs are still relative to `url`
   */
  async load(url, city) {
    this.baseUrl = new URL(url, window.location.href).href;
    try {
      if (city) this.city = city;
      else {
        const response = await fetch(this.baseUrl, { cache: "no-cache" });
        if (!response.ok) throw new Error(`${this.baseUrl}: HTTP ${response.status}`);
        this.city = /** @type {City} */ (await response.json());
      }
    } catch (error) {
      this.reportError(t("error.city"), error);
      this.#loadingDone = true;
      this.unsettle();
      return;
    }
    try {
      this.emit("cityload", { city: this.city });
      const specs = Array.isArray(this.city.layers) ? this.city.layers : [];
      // load in parallel, announce in city.json order
      const loading = specs.map((spec) => this.#loadLayer(spec));
      for (const [i, spec] of specs.entries()) {
        const result = await loading[i];
        if ("handle" in result) {
          const layer = { id: spec.id, kind: spec.kind, spec, handle: result.handle };
          // a layer the city marks "visible": false loads hidden (dense point clouds, say)
          if (spec.visible === false) layer.handle.show = false;
          this.layers.set(spec.id, layer);
          this.emit("layeradded", layer);
        } else {
          this.emit("layerfailed", { spec, reason: result.reason });
        }
      }
      this.#loadingDone = true;
      this.flyHome(0);
    } catch (error) {
      this.reportError(t("error.start"), error);
      this.#loadingDone = true;
      this.unsettle();
    }
  }

  /**
   * @param {LayerSpec} spec
   * @returns {Promise<{ handle: LayerHandle } | { reason: "unsupported" | "failed" }>}
   */
  async #loadLayer(spec) {
    const loader = loaderFor(spec.kind);
    if (!loader) {
      console.warn(`[cim] layer "${spec.id}": kind "${spec.kind}" is not supported yet; skipped`);
      return { reason: "unsupported" };
    }
    try {
      const url = new URL(spec.url, this.baseUrl).href;
      const reportError = this.reportError.bind(this);
      return { handle: await loader(spec, { viewer: this.cesium, url, reportError }) };
    } catch (error) {
      this.reportError(t("error.layer", { layer: spec.title ?? spec.id }), error);
      return { reason: "failed" };
    }
  }

  /**
   * @param {string} id
   * @param {boolean} show
   */
  setLayerVisible(id, show) {
    const layer = this.layers.get(id);
    if (!layer) return;
    layer.handle.show = show;
    if (!show && this.selection?.layerId === id) this.clearSelection();
    this.emit("layervisibility", { id, show });
    if (show) this.unsettle();
    else this.cesium.scene.requestRender();
  }

  /**
   * @param {string} id
   * @param {number} opacity  0 (invisible) to 1 (opaque)
   */
  setLayerOpacity(id, opacity) {
    const layer = this.layers.get(id);
    if (!layer) return;
    layer.handle.opacity = opacity;
    this.emit("layeropacity", { id, opacity: layer.handle.opacity });
    this.unsettle();
  }

  /**
   * Record an error, show it (tools listen to "error") and log it.
   * @param {string} message
   * @param {unknown} [detail]
   */
  reportError(message, detail) {
    const text = detail ? `${message}: ${detailText(detail)}` : message;
    this.errors.push(text);
    console.error(`[cim] ${text}`);
    this.emit("error", { message: text });
  }

  // ------------------------------------------------------------ readiness

  /**
   * The picture is about to change: render until every visible layer has loaded the tiles the
   * view needs (requestRenderMode renders only on demand), and be not `ready` until then.
   */
  unsettle() {
    this.ready = false;
    this.#settleFrames = 0;
    this.cesium.scene.requestRender();
    if (this.#settleTimer === null) {
      this.#settleTimer = window.setInterval(() => this.cesium.scene.requestRender(), 200);
    }
  }

  /** @returns {Promise<void>} */
  whenReady() {
    if (this.ready) return Promise.resolve();
    return new Promise((resolve) => this.#readyWaiters.push(resolve));
  }

  #onPostRender() {
    this.frames += 1;
    if (this.ready || !this.#loadingDone) return;
    this.#settleFrames += 1;
    if (this.#settleFrames < 3) return;
    for (const { handle } of this.layers.values()) {
      if (handle.tileset && handle.tileset.show && !handle.tileset.tilesLoaded) return;
    }
    // imagery and terrain load with the globe's own tiles
    const globe = this.cesium.scene.globe;
    if (globe.show && !globe.tilesLoaded) return;
    this.ready = true;
    if (this.#settleTimer !== null) window.clearInterval(this.#settleTimer);
    this.#settleTimer = null;
    this.#readyWaiters.splice(0).forEach((resolve) => resolve());
    this.emit("ready", {});
  }

  // ------------------------------------------------------------ camera

  /** @returns {Cesium.BoundingSphere | null} */
  #homeSphere() {
    const b = this.city?.bounds;
    if (b && [b.west, b.south, b.east, b.north].every(Number.isFinite)) {
      const lo = Number.isFinite(b.min_height) ? Number(b.min_height) : 0;
      const hi = Number.isFinite(b.max_height) ? Number(b.max_height) : lo;
      const corners = [];
      for (const lon of [b.west, b.east]) {
        for (const lat of [b.south, b.north]) {
          for (const h of [lo, hi]) corners.push(Cesium.Cartesian3.fromDegrees(lon, lat, h));
        }
      }
      return Cesium.BoundingSphere.fromPoints(corners);
    }
    for (const { handle } of this.layers.values()) if (handle.boundingSphere) return handle.boundingSphere;
    return null;
  }

  /**
   * @param {Cesium.BoundingSphere | null} sphere
   * @param {number} duration  seconds
   * @param {number} minRange  metres
   */
  #flyTo(sphere, duration, minRange) {
    if (!sphere) return;
    this.cesium.camera.flyToBoundingSphere(sphere, {
      offset: new Cesium.HeadingPitchRange(0, Cesium.Math.toRadians(-40), Math.max(sphere.radius * 2.2, minRange)),
      duration,
      complete: () => this.unsettle(),
    });
    this.unsettle();
  }

  /** Frame the whole city. @param {number} [duration] seconds */
  flyHome(duration = 0) {
    this.#flyTo(this.#homeSphere(), duration, 150);
  }

  /** @param {string} id */
  zoomTo(id) {
    this.#flyTo(this.layers.get(id)?.handle.boundingSphere ?? null, 1.5, 100);
  }

  /**
   * Look straight down at (lon, lat, height) from `range` metres above it.
   * @param {number} lon
   * @param {number} lat
   * @param {number} [height]
   * @param {number} [range]
   */
  lookAt(lon, lat, height = 0, range = 300) {
    this.cesium.camera.setView({
      destination: Cesium.Cartesian3.fromDegrees(lon, lat, height + range),
      orientation: { heading: 0, pitch: -Cesium.Math.PI_OVER_TWO, roll: 0 },
    });
    this.unsettle();
  }

  /** The canvas centre in page (client) pixels, where a mouse click lands on it. */
  canvasCenter() {
    const rect = this.cesium.scene.canvas.getBoundingClientRect();
    return { x: rect.left + rect.width / 2, y: rect.top + rect.height / 2 };
  }

  // ------------------------------------------------------------ picking and selection

  /**
   * @param {number} x  canvas pixels
   * @param {number} y
   * @returns {Cesium.Cesium3DTileFeature | null}
   */
  #pickFeature(x, y) {
    const picked = this.cesium.scene.pick(new Cesium.Cartesian2(x, y));
    return isTileFeature(picked) ? picked : null;
  }

  /**
   * Properties of the 3D Tiles feature at canvas pixel (x, y), or null; selects nothing.
   * @param {number} x
   * @param {number} y
   */
  pickAt(x, y) {
    const feature = this.#pickFeature(x, y);
    return feature ? featureProperties(feature) : null;
  }

  /**
   * Select (and highlight) the feature at canvas pixel (x, y); nothing there clears the selection.
   * @param {number} x
   * @param {number} y
   * @returns {Record<string, PlainValue> | null} its properties
   */
  select(x, y) {
    return this.selectFeature(this.#pickFeature(x, y));
  }

  /**
   * @param {Cesium.Cesium3DTileFeature | null} feature
   * @returns {Record<string, PlainValue> | null}
   */
  selectFeature(feature) {
    if (!feature) {
      this.clearSelection();
      return null;
    }
    if (this.selection?.feature === feature) return this.selection.properties;
    this.clearSelection();
    this.#highlight(feature);
    const layerId = this.#layerOf(feature.tileset);
    const properties = featureProperties(feature);
    const idKey = this.#idKey(layerId);
    const id = idKey && properties[idKey] !== undefined && properties[idKey] !== null ? String(properties[idKey]) : null;
    this.#setSelection({ layerId, properties, feature, id });
    return this.selection?.properties ?? null;
  }

  /**
   * Select a feature by its id: highlight it in every loaded tile of its layer (and in tiles that
   * load later), whatever the camera sees. `properties` are shown when no tile holding it is
   * loaded (a search result far away, or hidden).
   * @param {string} layerId
   * @param {string} id  the value of the layer's id_property
   * @param {Record<string, PlainValue>} [properties]
   * @returns {Record<string, PlainValue> | null} the selection's properties
   */
  selectById(layerId, id, properties) {
    this.clearSelection();
    const layer = this.layers.get(layerId);
    const tileset = layer?.handle.tileset ?? null;
    const idKey = this.#idKey(layerId) ?? "id";
    /** @type {Cesium.Cesium3DTileFeature[]} */
    const found = [];
    if (tileset) {
      for (const feature of loadedFeatures(tileset)) if (String(feature.getProperty(idKey)) === String(id)) found.push(feature);
    }
    found.forEach((feature) => this.#highlight(feature));
    const props = found.length ? featureProperties(found[0]) : (properties ?? { [idKey]: id });
    this.#setSelection({ layerId, properties: props, feature: found[0] ?? null, id: String(id) });
    if (tileset) {
      const onLoad = (/** @type {Cesium.Cesium3DTile} */ tile) => {
        for (const feature of contentFeatures(tile.content)) {
          if (String(feature.getProperty(idKey)) === String(id)) this.#highlight(feature);
        }
      };
      tileset.tileLoad.addEventListener(onLoad);
      this.#stopFollowing = () => tileset.tileLoad.removeEventListener(onLoad);
    }
    return this.selection?.properties ?? null;
  }

  /**
   * Select properties with no feature in the scene (a search result whose feature is hidden).
   * @param {string | null} layerId
   * @param {Record<string, PlainValue>} properties
   */
  selectProperties(layerId, properties) {
    this.clearSelection();
    const idKey = this.#idKey(layerId);
    const id = idKey && properties[idKey] !== undefined && properties[idKey] !== null ? String(properties[idKey]) : null;
    this.#setSelection({ layerId, properties, feature: null, id });
  }

  /**
   * Colour the features of a result set (query results) in every loaded tile and in tiles that
   * load later, until `clearResults`. The selection's highlight stays on top.
   * @param {{ layer: string, id: string }[]} results
   * @returns {number} features coloured so far
   */
  markResults(results) {
    this.clearResults();
    /** @type {Map<string, Set<string>>} */
    const byLayer = new Map();
    for (const { layer, id } of results) {
      if (!byLayer.has(layer)) byLayer.set(layer, new Set());
      byLayer.get(layer)?.add(String(id));
    }
    for (const [layerId, ids] of byLayer) {
      const tileset = this.layers.get(layerId)?.handle.tileset;
      const idKey = this.#idKey(layerId) ?? "id";
      if (!tileset) continue;
      const mark = (/** @type {Cesium.Cesium3DTileFeature} */ feature) => {
        if (!ids.has(String(feature.getProperty(idKey))) || this.#marked.has(feature)) return;
        const saved = this.#highlighted.get(feature);
        this.#marked.set(feature, saved ?? Cesium.Color.clone(feature.color));
        if (saved) this.#highlighted.set(feature, RESULT.clone());
        else feature.color = RESULT;
      };
      for (const feature of loadedFeatures(tileset)) mark(feature);
      const onLoad = (/** @type {Cesium.Cesium3DTile} */ tile) => {
        for (const feature of contentFeatures(tile.content)) mark(feature);
      };
      tileset.tileLoad.addEventListener(onLoad);
      this.#stopMarking.push(() => tileset.tileLoad.removeEventListener(onLoad));
    }
    this.cesium.scene.requestRender();
    return this.#marked.size;
  }

  /** Put the colours of the marked results back. */
  clearResults() {
    this.#stopMarking.splice(0).forEach((stop) => stop());
    for (const [feature, colour] of this.#marked) {
      try {
        if (feature.tileset.isDestroyed()) continue;
        if (this.#highlighted.has(feature)) this.#highlighted.set(feature, colour);
        else feature.color = colour;
      } catch {
        // unloaded with its tile
      }
    }
    this.#marked.clear();
    this.cesium.scene.requestRender();
  }

  /** @param {Cesium.Cesium3DTileFeature} feature */
  #highlight(feature) {
    if (this.#highlighted.has(feature)) return;
    this.#highlighted.set(feature, Cesium.Color.clone(feature.color));
    feature.color = HIGHLIGHT;
  }

  /** the property that identifies a layer's features @param {string | null} layerId */
  #idKey(layerId) {
    if (layerId === null) return null;
    return this.layers.get(layerId)?.spec.id_property ?? "id";
  }

  clearSelection() {
    this.#stopFollowing?.();
    this.#stopFollowing = null;
    for (const [feature, colour] of this.#highlighted) {
      try {
        if (!feature.tileset.isDestroyed()) feature.color = colour;
      } catch {
        // the tile holding the feature was unloaded; nothing left to restore
      }
    }
    this.#highlighted.clear();
    const had = this.selection !== null;
    this.selection = null;
    this.cesium.scene.requestRender();
    if (had) this.emit("deselect", {});
  }

  /** @param {Selection} selection */
  #setSelection(selection) {
    this.selection = selection;
    this.cesium.scene.requestRender();
    this.emit("select", selection);
  }

  /** @param {Cesium.Cesium3DTileset} tileset */
  #layerOf(tileset) {
    for (const layer of this.layers.values()) if (layer.handle.tileset === tileset) return layer.id;
    return null;
  }

  /** @param {Cesium.Cartesian2} position */
  #onClick(position) {
    let defaultPrevented = false;
    /** @type {Cesium.Cesium3DTileFeature | null | undefined} */
    let picked;
    const pick = () => (picked === undefined ? (picked = this.#pickFeature(position.x, position.y)) : picked);
    this.emit("click", {
      x: position.x,
      y: position.y,
      get feature() {
        return pick();
      },
      preventDefault: () => {
        defaultPrevented = true;
      },
    });
    if (!defaultPrevented) this.selectFeature(pick());
  }

  // ------------------------------------------------------------ reset

  /**
   * Back to the state after loading: no selection, layers shown as city.json says, the globe
   * shown, tools at their defaults (they listen to "reset"), the camera home.
   * @returns {Promise<void>} resolves when ready
   */
  reset() {
    this.clearSelection();
    for (const layer of this.layers.values()) {
      const show = layer.spec.visible !== false;
      if (layer.handle.show !== show) this.setLayerVisible(layer.id, show);
      if (layer.handle.opacity !== 1) this.setLayerOpacity(layer.id, 1);
    }
    this.cesium.scene.globe.show = true;
    this.emit("reset", {});
    this.flyHome(0);
    return this.whenReady();
  }
}

/**
 * The features of a tile's content (and of the contents inside a composite or multi-content tile).
 * @param {Cesium.Cesium3DTileContent | undefined} content
 * @returns {Generator<Cesium.Cesium3DTileFeature>}
 */
function* contentFeatures(content) {
  if (!content) return;
  const n = content.featuresLength ?? 0;
  for (let i = 0; i < n; i++) yield content.getFeature(i);
  for (const inner of content.innerContents ?? []) yield* contentFeatures(inner);
}

/**
 * The features of every tile of `tileset` whose content is loaded.
 * @param {Cesium.Cesium3DTileset} tileset
 * @returns {Generator<Cesium.Cesium3DTileFeature>}
 */
function* loadedFeatures(tileset) {
  /** @type {Cesium.Cesium3DTile[]} */
  const stack = tileset.root ? [tileset.root] : [];
  while (stack.length) {
    const tile = /** @type {Cesium.Cesium3DTile} */ (stack.pop());
    // contentReady is not in Cesium's published types: the tile's content is loaded
    if (/** @type {{ contentReady?: boolean }} */ (/** @type {unknown} */ (tile)).contentReady) yield* contentFeatures(tile.content);
    stack.push(...tile.children);
  }
}

/** @param {unknown} detail */
function detailText(detail) {
  if (detail instanceof Error) return detail.message;
  if (typeof detail === "string") return detail;
  const d = /** @type {{ statusCode?: unknown, message?: unknown }} */ (detail);
  if (Number.isFinite(d?.statusCode)) return `HTTP ${d.statusCode}`; // RequestErrorEvent
  if (typeof d?.message === "string") return d.message;
  try {
    return JSON.stringify(detail);
  } catch {
    return String(detail);
  }
}
