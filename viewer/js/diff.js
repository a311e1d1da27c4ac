// @ts-check
// Colours a diff between two versions of the city (GET /api/diff?from=&to=, see cim.diff): on
// the current tiles, added features green and changed ones orange; removed ones, which the
// current tiles no longer hold, as red translucent boxes where they stood. Features are matched
// by their layer's id property (city.json `id_property`, else "id"), as the diff names them.
// Scripting: cim.diff.show("v1", "v2"), cim.diff.apply(diffJson), cim.diff.clear().

/** @import { CityViewer } from "./city-viewer.js" */

/** legend colours (CSS, sRGB: Cesium3DTileFeature.color takes them as they are) */
export const DIFF_COLOURS = { added: "#3cb371", changed: "#f28c28", removed: "#d64545" };

/**
 * @typedef {object} DiffFeature  one entry of /api/diff's `features`
 * @property {string} layer
 * @property {string} id
 * @property {"added" | "removed" | "changed"} change
 * @property {number[]} bbox  west, south, east, north (degrees)
 * @property {number | null} [base]
 * @property {number | null} [top]
 *
 * @typedef {object} DiffDoc
 * @property {string} from
 * @property {string} to
 * @property {DiffFeature[]} features
 */

/** @param {CityViewer} viewer */
export function diffTool(viewer) {
  /** @type {Map<string, Map<string, string>>} layer id -> feature id -> change */
  let changes = new Map();
  /** @type {Cesium.Entity[]} */
  let boxes = [];
  /** @type {(() => void)[]} */
  let listeners = [];
  /** @type {WeakSet<object>} tile contents coloured already */
  let painted = new WeakSet();
  /** @type {Set<Cesium.Cesium3DTileFeature>} */
  const coloured = new Set();
  /** @type {DiffDoc | null} */
  let shown = null;

  /**
   * @param {string} layerId
   * @param {Cesium.Cesium3DTileContent} content
   */
  function paintContent(layerId, content) {
    if (painted.has(content)) return;
    painted.add(content);
    const ids = changes.get(layerId);
    if (!ids) return;
    const key = viewer.layers.get(layerId)?.spec.id_property ?? "id";
    for (let i = 0; i < content.featuresLength; i++) {
      const feature = content.getFeature(i);
      const change = ids.get(String(feature.getProperty(key)));
      if (change === "added" || change === "changed") {
        feature.color = Cesium.Color.fromCssColorString(DIFF_COLOURS[change]);
        coloured.add(feature);
      }
    }
  }

  /** Colour what is loaded now and what loads later, layer by layer. */
  function watch() {
    for (const layer of viewer.layers.values()) {
      const tileset = layer.handle.tileset;
      if (!tileset || !changes.has(layer.id)) continue;
      const onVisible = (/** @type {Cesium.Cesium3DTile} */ tile) => paintContent(layer.id, tile.content);
      tileset.tileVisible.addEventListener(onVisible);
      listeners.push(() => tileset.tileVisible.removeEventListener(onVisible));
    }
  }

  /** @param {DiffFeature} f */
  function removedBox(f) {
    const [west, south, east, north] = f.bbox;
    const base = f.base ?? 0;
    return viewer.cesium.entities.add({
      name: `${f.layer}/${f.id} (removed)`,
      rectangle: {
        coordinates: Cesium.Rectangle.fromDegrees(west, south, east, north),
        height: base,
        extrudedHeight: Math.max(f.top ?? base + 1, base + 0.1),
        material: Cesium.Color.fromCssColorString(DIFF_COLOURS.removed).withAlpha(0.55),
      },
    });
  }

  /** Remove the colours and boxes of the diff shown. */
  function clear() {
    for (const off of listeners) off();
    listeners = [];
    for (const feature of coloured) feature.color = Cesium.Color.WHITE;
    coloured.clear();
    for (const box of boxes) viewer.cesium.entities.remove(box);
    boxes = [];
    changes = new Map();
    painted = new WeakSet();
    shown = null;
    viewer.cesium.scene.requestRender();
  }

  /**
   * Show a diff document (as /api/diff answers); returns the counts shown.
   * @param {DiffDoc} doc
   */
  function apply(doc) {
    clear();
    shown = doc;
    for (const f of doc.features) {
      if (f.change === "removed") {
        boxes.push(removedBox(f));
        continue;
      }
      let ids = changes.get(f.layer);
      if (!ids) changes.set(f.layer, (ids = new Map()));
      ids.set(String(f.id), f.change);
    }
    watch();
    viewer.cesium.scene.requestRender();
    const count = (/** @type {string} */ c) => doc.features.filter((f) => f.change === c).length;
    return { added: count("added"), changed: count("changed"), removed: count("removed") };
  }

  /**
   * Fetch the diff between two versions and show it.
   * @param {string} from
   * @param {string} [to]
   */
  async function show(from, to = "latest") {
    const url = new URL("/api/diff", window.location.href);
    url.search = new URLSearchParams({ from, to }).toString();
    const response = await fetch(url, { credentials: "same-origin" });
    if (!response.ok) throw new Error(`diff ${from} → ${to}: HTTP ${response.status} ${await response.text()}`);
    return apply(await response.json());
  }

  viewer.on("reset", () => clear());
  return {
    show,
    apply,
    clear,
    /** the diff shown, or null */
    get shown() {
      return shown;
    },
    /** how many tile features are coloured now */
    get coloured() {
      return coloured.size;
    },
  };
}
