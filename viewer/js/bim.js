// @ts-check
// BIM tools, for every BIM layer at once: filter elements by IFC class and storey (a 3D Tiles
// style on the element metadata) and cut into the buildings with a horizontal clipping plane.
// The panel lists the classes and storeys of all BIM layers.

/** @import { CityViewer } from "./city-viewer.js" */
/** @import { BimLayerSpec } from "../types/city" */

import { byId } from "./dom.js";

const CUT_EDGE = Cesium.Color.fromCssColorString("#f2b33d");

/** @param {string} s */
function quote(s) {
  return `'${String(s).replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`;
}

/**
 * @typedef {object} Model  one BIM layer, as this tool sees it
 * @property {BimLayerSpec} spec
 * @property {Cesium.Cesium3DTileset} tileset
 * @property {Cesium.ClippingPlane} plane  a collection belongs to one tileset: one plane each
 */

/** @param {CityViewer} viewer */
export function bimTool(viewer) {
  const panel = byId("bim-panel", HTMLElement);
  const classBox = byId("bim-classes", HTMLElement);
  const storeySelect = byId("bim-storey", HTMLSelectElement);
  const cut = byId("bim-cut", HTMLInputElement);
  const cutHeight = byId("bim-cut-height", HTMLInputElement);
  const cutLabel = byId("bim-cut-label", HTMLElement);
  /** @type {Model[]} */
  const models = [];
  /** @type {Set<string>} IFC classes hidden */
  const hidden = new Set();
  /** city origin height: cut heights are relative to it (every layer's root frame, z up) */
  let originHeight = 0;

  function renderClasses() {
    const classes = [...new Set(models.flatMap((m) => m.spec.classes ?? []))].sort();
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

  function renderStoreys() {
    const storeys = [...new Set(models.flatMap((m) => m.spec.storey_names ?? []))];
    const chosen = storeySelect.value;
    storeySelect.replaceChildren(new Option("All storeys", ""), ...storeys.map((name) => new Option(name, name)));
    storeySelect.value = storeys.includes(chosen) ? chosen : "";
  }

  // the slider spans every model's heights
  function setCutRange() {
    const lows = models.map((m) => m.spec.bounds?.min_height ?? originHeight);
    const highs = models.map((m) => m.spec.bounds?.max_height ?? originHeight + 10);
    const lo = Math.min(...lows) - originHeight;
    const hi = Math.max(...highs) - originHeight;
    cutHeight.min = String(Math.floor(lo));
    cutHeight.max = String(Math.ceil(hi));
    cutHeight.step = "0.1";
    cutHeight.value = String((lo + hi) / 2);
  }

  function applyStyle() {
    for (const { spec, tileset } of models) {
      const ifcClass = spec.viewer_properties?.class ?? "IfcClass";
      const storey = spec.viewer_properties?.storey ?? "Storey";
      const terms = [];
      if (hidden.size) terms.push(`!(${[...hidden].map((c) => `\${${ifcClass}} === ${quote(c)}`).join(" || ")})`);
      if (storeySelect.value) terms.push(`\${${storey}} === ${quote(storeySelect.value)}`);
      tileset.style = terms.length ? new Cesium.Cesium3DTileStyle({ show: terms.join(" && ") }) : undefined;
    }
    viewer.unsettle();
  }

  function applyCut() {
    const h = Number(cutHeight.value);
    for (const { tileset, plane } of models) {
      plane.distance = h; // keeps -z + h >= 0: everything below the cut
      tileset.clippingPlanes.enabled = cut.checked;
    }
    cutLabel.textContent = cut.checked ? `cut at ${(h + originHeight).toFixed(1)} m` : "";
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

  /** @param {string | null} [name]  a storey name; none shows every storey */
  function setStorey(name) {
    storeySelect.value = name ?? "";
    applyStyle();
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
    models.push({ spec: /** @type {BimLayerSpec} */ (spec), tileset: handle.tileset, plane });
    panel.hidden = false;
    renderClasses();
    renderStoreys();
    setCutRange();
    applyStyle();
    applyCut();
  });

  viewer.on("reset", () => {
    if (!models.length) return;
    hidden.clear();
    renderClasses();
    storeySelect.value = "";
    cut.checked = false;
    setCutRange();
    applyStyle();
    applyCut();
  });

  return { setClassVisible, setStorey, setCut };
}
