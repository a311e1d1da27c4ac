// @ts-check
// Measuring: click two points in the scene; the viewer draws the segment and labels its
// length, horizontal distance and height difference. Positions come from the depth buffer
// (scene.pickPosition), so they land on buildings, terrain or point clouds alike.
// Line and label are drawn by primitive collections, both in the next frame: an entity's
// polyline is built by a web worker and showed up seconds after its label.

/** @import { CityViewer } from "./city-viewer.js" */

import { byId } from "./dom.js";
import { formatNumber, onLanguageChange, t } from "./i18n.js";

const LINE = Cesium.Color.fromCssColorString("#4fc3f7");
const LABEL_BACKGROUND = Cesium.Color.fromCssColorString("#101418").withAlpha(0.8);

/**
 * @typedef {object} Measurement  metres
 * @property {number} distance  straight line
 * @property {number} horizontal  along the ellipsoid
 * @property {number} vertical  height of the second point above the first
 */

/** @param {CityViewer} viewer */
export function measureTool(viewer) {
  const button = byId("measure-toggle", HTMLButtonElement);
  const out = byId("measure-result", HTMLElement);
  const cesium = viewer.cesium;
  const scene = cesium.scene;
  scene.pickTranslucentDepth = true;
  let active = false;
  /** @type {Cesium.Cartesian3 | null} */
  let first = null;
  const lines = scene.primitives.add(new Cesium.PolylineCollection());
  const labels = scene.primitives.add(new Cesium.LabelCollection());
  /** @type {Measurement | null} the last one, for its text in another language */
  let last = null;
  let waitingForSecond = false;

  /** @param {boolean} on */
  function setActive(on) {
    active = on;
    first = null;
    button.setAttribute("aria-pressed", String(on));
    button.textContent = on ? t("measure.clickTwo") : t("measure.start");
    scene.canvas.style.cursor = on ? "crosshair" : "";
  }

  /** @param {number} x @param {number} y */
  function pointAt(x, y) {
    const p = scene.pickPosition(new Cesium.Cartesian2(x, y));
    return Cesium.defined(p) ? p : null;
  }

  /**
   * @param {Cesium.Cartesian3} a
   * @param {Cesium.Cartesian3} b
   * @returns {Measurement}
   */
  function describe(a, b) {
    const ca = Cesium.Cartographic.fromCartesian(a);
    const cb = Cesium.Cartographic.fromCartesian(b);
    const horizontal = new Cesium.EllipsoidGeodesic(ca, cb).surfaceDistance;
    return { distance: Cesium.Cartesian3.distance(a, b), horizontal, vertical: cb.height - ca.height };
  }

  /**
   * @param {Cesium.Cartesian3} a
   * @param {Cesium.Cartesian3} b
   * @param {Measurement} m
   */
  function draw(a, b, m) {
    lines.add({ positions: [a, b], width: 3, material: Cesium.Material.fromType("Color", { color: LINE }) });
    addLabel(a, b);
    last = m;
    waitingForSecond = false;
    describeLast();
    scene.requestRender();
  }

  /**
   * The length label at the middle of a segment.
   * @param {Cesium.Cartesian3} a
   * @param {Cesium.Cartesian3} b
   */
  function addLabel(a, b) {
    labels.add({
      position: Cesium.Cartesian3.midpoint(a, b, new Cesium.Cartesian3()),
      text: metres(Cesium.Cartesian3.distance(a, b)),
      font: "14px sans-serif",
      fillColor: Cesium.Color.WHITE,
      showBackground: true,
      backgroundColor: LABEL_BACKGROUND,
      disableDepthTestDistance: Number.POSITIVE_INFINITY,
    });
  }

  /** @param {number} value */
  function metres(value) {
    return t("measure.metres", { value: formatNumber(value, { minimumFractionDigits: 2, maximumFractionDigits: 2 }) });
  }

  function describeLast() {
    if (waitingForSecond) {
      out.textContent = t("measure.firstSet");
      return;
    }
    if (!last) return;
    const sign = last.vertical >= 0 ? "+" : "−";
    out.textContent = t("measure.result", {
      length: metres(last.distance),
      horizontal: metres(last.horizontal),
      height: sign + metres(Math.abs(last.vertical)),
    });
  }

  /**
   * One measurement between canvas pixels (x1, y1) and (x2, y2); null where nothing is hit.
   * @param {number} x1 @param {number} y1 @param {number} x2 @param {number} y2
   */
  function measure(x1, y1, x2, y2) {
    const a = pointAt(x1, y1);
    const b = pointAt(x2, y2);
    if (!a || !b) return null;
    const m = describe(a, b);
    draw(a, b, m);
    return m;
  }

  function clear() {
    lines.removeAll();
    labels.removeAll();
    last = null;
    waitingForSecond = false;
    out.textContent = "";
    first = null;
    scene.requestRender();
  }

  button.addEventListener("click", () => setActive(!active));
  byId("measure-clear", HTMLButtonElement).addEventListener("click", clear);

  // while measuring, clicks set points instead of selecting
  viewer.on("click", (click) => {
    if (!active) return;
    click.preventDefault();
    const p = pointAt(click.x, click.y);
    if (!p) return;
    if (!first) {
      first = p;
      waitingForSecond = true;
      describeLast();
    } else {
      draw(first, p, describe(first, p));
      setActive(false);
    }
  });
  viewer.on("reset", () => {
    clear();
    setActive(false);
  });
  onLanguageChange(() => {
    button.textContent = active ? t("measure.clickTwo") : t("measure.start");
    describeLast();
    labels.removeAll();
    // the labels' text, in the language now shown: rebuilt from the lines' ends
    for (let i = 0; i < lines.length; i++) {
      const [a, b] = lines.get(i).positions;
      addLabel(a, b);
    }
    scene.requestRender();
  });
  setActive(false);

  return { measure, clear };
}
