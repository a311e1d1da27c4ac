// @ts-check
// BIM tools, for every BIM layer at once: filter elements by IFC class and storey (a 3D Tiles
// style on the element metadata) and cut into the buildings with a horizontal clipping plane.
// A layer holds one or more models (city.json `models`, in the order of its root's children):
// the panel picks one (or all), lists that model's own storeys (a storey name is only ever
// matched within its model), and the cut slider spans the chosen model's heights, starting
// half-way up it. Selecting an element in the scene picks its model.

/** @import { CityViewer } from "./city-viewer.js" */
/** @import { BimLayerSpec } from "../types/city" */

import { byId } from "./dom.js";
import { formatNumber, onLanguageChange, t } from "./i18n.js";
import { setTilesetShow } from "./layers.js";

const CUT_EDGE = Cesium.Color.fromCssColorString("#f2b33d");
/** an option value joining a model and a storey (neither holds this character) */
const SEP = "\u001f";

/** @param {string} s */
function quote(s) {
  return `'${String(s).replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`;
}

/**
 * @typedef {object} Layer  one BIM layer, as this tool sees it
 * @property {BimLayerSpec} spec
 * @property {Cesium.Cesium3DTileset} tileset
 * @property {Cesium.ClippingPlane} plane  a collection belongs to one tileset: one plane each
 */

/**
 * @typedef {object} Model  one model of a BIM layer
 * @property {string} key  layer id + SEP + model name (the model select's value)
 * @property {string} name
 * @property {Layer} layer
 * @property {number} index  its place among the layer's root children
 * @property {string[]} storeys
 */

/**
 * The ellipsoidal height range of a tile's bounding volume (its box corners, or its sphere).
 * @param {Cesium.Cesium3DTile} tile
 * @returns {[number, number] | null}
 */
function heightRange(tile) {
  // a box volume (TileOrientedBoundingBox, not in Cesium's published types) holds its OrientedBoundingBox
  const tileVolume = /** @type {{ boundingVolume?: { boundingVolume?: unknown } }} */ (/** @type {unknown} */ (tile)).boundingVolume;
  const volume = tileVolume?.boundingVolume;
  /** @type {Cesium.Cartesian3[]} */
  let points = [];
  if (volume instanceof Cesium.OrientedBoundingBox) {
    points = Cesium.OrientedBoundingBox.computeCorners(volume);
  } else if (tile.boundingSphere) {
    const { center, radius } = tile.boundingSphere;
    const up = Cesium.Ellipsoid.WGS84.geodeticSurfaceNormal(center, new Cesium.Cartesian3());
    points = [-1, 1].map((s) => Cesium.Cartesian3.add(center, Cesium.Cartesian3.multiplyByScalar(up, s * radius, new Cesium.Cartesian3()), new Cesium.Cartesian3()));
  }
  const heights = points.map((p) => Cesium.Cartographic.fromCartesian(p)?.height).filter((h) => Number.isFinite(h));
  return heights.length ? [Math.min(...heights), Math.max(...heights)] : null;
}

/** @param {CityViewer} viewer */
export function bimTool(viewer) {
  const panel = byId("bim-panel", HTMLElement);
  const modelSelect = byId("bim-model", HTMLSelectElement);
  const classBox = byId("bim-classes", HTMLElement);
  const storeySelect = byId("bim-storey", HTMLSelectElement);
  const cut = byId("bim-cut", HTMLInputElement);
  const cutHeight = byId("bim-cut-height", HTMLInputElement);
  const cutLabel = byId("bim-cut-label", HTMLElement);
  /** @type {Layer[]} */
  const layers = [];
  /** @type {Model[]} */
  const models = [];
  /** @type {Set<string>} IFC classes hidden */
  const hidden = new Set();
  /** city origin height: cut heights are relative to it (every layer's root frame, z up) */
  let originHeight = 0;

  function chosenModel() {
    return models.find((m) => m.key === modelSelect.value) ?? null;
  }

  function renderClasses() {
    const classes = [...new Set(layers.flatMap((l) => l.spec.classes ?? []))].sort();
    classBox.replaceChildren(
      ...classes.map((name) => {
        const label = document.createElement("label");
        label.className = "inline chip";
        const box = document.createElement("input");
        box.type = "checkbox";
        box.checked = !hidden.has(name);
        box.dataset.ifcClass = name;
        box.addEventListener("change", () => setClassVisible(name, box.checked));
        label.append(box, document.createTextNode(name.replace(/^Ifc/, "")));
        return label;
      }),
    );
  }

  function renderModels() {
    const chosen = modelSelect.value;
    modelSelect.replaceChildren(new Option(t("bim.allModels"), ""), ...models.map((m) => new Option(m.name, m.key)));
    modelSelect.value = models.some((m) => m.key === chosen) ? chosen : "";
    modelSelect.hidden = models.length < 2;
  }

  // the chosen model's storeys; with every model, each model's under its name
  function renderStoreys() {
    const chosen = storeySelect.value;
    const model = chosenModel();
    const shown = model ? [model] : models;
    /** @type {(HTMLOptionElement | HTMLOptGroupElement)[]} */
    const options = [new Option(t("bim.allStoreys"), "")];
    for (const m of shown) {
      const items = m.storeys.map((name) => new Option(name, `${m.key}${SEP}${name}`));
      if (shown.length > 1) {
        const group = document.createElement("optgroup");
        group.label = m.name;
        group.append(...items);
        options.push(group);
      } else {
        options.push(...items);
      }
    }
    storeySelect.replaceChildren(...options);
    const values = [...storeySelect.options].map((o) => o.value);
    storeySelect.value = values.includes(chosen) ? chosen : "";
  }

  /** the chosen model's heights (every model's when none is chosen), ellipsoidal metres */
  function cutRange() {
    const model = chosenModel();
    /** @type {[number, number][]} */
    const ranges = [];
    for (const m of model ? [model] : models) {
      const child = m.layer.tileset.root?.children?.[m.index];
      const range = child ? heightRange(child) : null;
      if (range) ranges.push(range);
    }
    if (!ranges.length) {
      for (const l of layers) {
        const b = l.spec.bounds;
        if (b && Number.isFinite(b.min_height) && Number.isFinite(b.max_height)) ranges.push([Number(b.min_height), Number(b.max_height)]);
      }
    }
    if (!ranges.length) return [originHeight, originHeight + 10];
    return [Math.min(...ranges.map((r) => r[0])), Math.max(...ranges.map((r) => r[1]))];
  }

  function setCutRange() {
    const [lo, hi] = cutRange().map((h) => h - originHeight);
    cutHeight.min = String(Math.floor(lo));
    cutHeight.max = String(Math.ceil(hi));
    cutHeight.step = "0.1";
    cutHeight.value = String((lo + hi) / 2);
  }

  function applyStyle() {
    const parts = storeySelect.value ? storeySelect.value.split(SEP) : [];
    const storeyModel = parts.length === 3 ? `${parts[0]}${SEP}${parts[1]}` : "";
    const storey = parts.length === 3 ? parts[2] : "";
    for (const layer of layers) {
      const { spec, tileset } = layer;
      const ifcClass = spec.viewer_properties?.class ?? "IfcClass";
      const storeyProp = spec.viewer_properties?.storey ?? "Storey";
      const modelProp = spec.viewer_properties?.model ?? "Model";
      const terms = [];
      if (hidden.size) terms.push(`!(${[...hidden].map((c) => `\${${ifcClass}} === ${quote(c)}`).join(" || ")})`);
      if (storey) {
        const model = models.find((m) => m.key === storeyModel);
        if (model?.layer === layer) terms.push(`\${${modelProp}} === ${quote(model.name)} && \${${storeyProp}} === ${quote(storey)}`);
        else terms.push("false");
      }
      setTilesetShow(tileset, terms.join(" && "));
    }
    viewer.unsettle();
  }

  function describeCut() {
    const h = Number(cutHeight.value);
    cutLabel.textContent = cut.checked ? t("bim.cutAt", { height: formatNumber(h + originHeight, { minimumFractionDigits: 1, maximumFractionDigits: 1 }) }) : "";
  }

  function applyCut() {
    const h = Number(cutHeight.value);
    for (const { tileset, plane } of layers) {
      plane.distance = h; // keeps -z + h >= 0: everything below the cut
      tileset.clippingPlanes.enabled = cut.checked;
    }
    describeCut();
    viewer.unsettle();
  }

  /**
   * @param {string} name  an IFC class
   * @param {boolean} visible
   * @returns {boolean} false when no BIM layer has that class
   */
  function setClassVisible(name, visible) {
    const box = classBox.querySelector(`input[data-ifc-class="${CSS.escape(name)}"]`);
    if (!(box instanceof HTMLInputElement)) return false;
    box.checked = visible;
    if (visible) hidden.delete(name);
    else hidden.add(name);
    applyStyle();
    return true;
  }

  /**
   * Choose a model (by name; none: every model): its storeys, its cut range.
   * @param {string | null} [name]
   * @returns {boolean} false when no model has that name
   */
  function setModel(name) {
    const model = name ? models.find((m) => m.name === name) : null;
    if (name && !model) return false;
    modelSelect.value = model?.key ?? "";
    renderStoreys();
    setCutRange();
    applyStyle();
    applyCut();
    return true;
  }

  /**
   * Show one storey (of the chosen model, or the first model that has it); none shows every storey.
   * @param {string | null} [name]
   * @returns {boolean} false when no model listed has that storey
   */
  function setStorey(name) {
    if (!name) {
      storeySelect.value = "";
    } else {
      const value = [...storeySelect.options].map((o) => o.value).find((v) => v.endsWith(`${SEP}${name}`));
      if (!value) return false;
      storeySelect.value = value;
    }
    applyStyle();
    return true;
  }

  /**
   * @param {boolean} enabled
   * @param {number} [absoluteHeight]  metres, ellipsoidal
   */
  function setCut(enabled, absoluteHeight) {
    cut.checked = Boolean(enabled);
    if (absoluteHeight !== undefined && Number.isFinite(absoluteHeight)) {
      cutHeight.value = String(absoluteHeight - originHeight);
    }
    applyCut();
  }

  /** the cut slider's range and value, ellipsoidal metres (tests, scripts) */
  function cutState() {
    return {
      min: Number(cutHeight.min) + originHeight,
      max: Number(cutHeight.max) + originHeight,
      value: Number(cutHeight.value) + originHeight,
      enabled: cut.checked,
    };
  }

  modelSelect.addEventListener("change", () => setModel(chosenModel()?.name ?? null));
  storeySelect.addEventListener("change", applyStyle);
  cut.addEventListener("change", applyCut);
  cutHeight.addEventListener("input", applyCut);

  viewer.on("layeradded", ({ kind, spec, handle }) => {
    if (kind !== "bim" || !handle.tileset) return;
    originHeight = viewer.city?.origin?.height ?? 0;
    const plane = new Cesium.ClippingPlane(new Cesium.Cartesian3(0, 0, -1), 0);
    handle.tileset.clippingPlanes = new Cesium.ClippingPlaneCollection({
      planes: [plane],
      enabled: false,
      edgeWidth: 1.5,
      edgeColor: CUT_EDGE,
    });
    const bimSpec = /** @type {BimLayerSpec} */ (spec);
    const layer = { spec: bimSpec, tileset: handle.tileset, plane };
    layers.push(layer);
    const entries = bimSpec.models?.length ? bimSpec.models : [{ model: bimSpec.title ?? bimSpec.id, storeys: (bimSpec.storey_names ?? []).map((name) => ({ name, elevation: null })) }];
    entries.forEach((entry, index) => {
      const storeys = [...new Set((entry.storeys ?? []).map((s) => s.name).filter((n) => typeof n === "string" && n !== ""))];
      models.push({ key: `${spec.id}${SEP}${entry.model}`, name: entry.model, layer, index, storeys: /** @type {string[]} */ (storeys) });
    });
    panel.hidden = false;
    renderModels();
    renderClasses();
    renderStoreys();
    setCutRange();
    applyStyle();
    applyCut();
  });

  // an element picked in the scene chooses its model (its storeys, its cut range), unless a
  // storey or a cut is in use; the style is left alone (restyling would undo the highlight)
  viewer.on("select", ({ layerId, properties }) => {
    const layer = layers.find((l) => l.spec.id === layerId);
    if (!layer || storeySelect.value || cut.checked) return;
    const name = properties[layer.spec.viewer_properties?.model ?? "Model"];
    const model = models.find((m) => m.layer === layer && m.name === name);
    if (!model || model.key === modelSelect.value) return;
    modelSelect.value = model.key;
    renderStoreys();
    setCutRange();
    describeCut();
  });

  viewer.on("reset", () => {
    if (!layers.length) return;
    hidden.clear();
    renderClasses();
    modelSelect.value = "";
    renderStoreys();
    storeySelect.value = "";
    cut.checked = false;
    setCutRange();
    applyStyle();
    applyCut();
  });

  onLanguageChange(() => {
    if (!layers.length) return;
    renderModels();
    renderStoreys();
    describeCut();
  });

  return { setClassVisible, setStorey, setModel, setCut, cutState };
}
