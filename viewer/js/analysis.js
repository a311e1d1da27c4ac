// @ts-check
// Planning analyses (日照、阴影、通视、可视域、天际线、控高、淹没): a panel that asks the server
// (POST /api/analysis/{kind}, computed in numpy over the city's surface model) and draws the
// answer's GeoJSON as an overlay. The numbers come from the server only: the browser draws.
// Requests default to a square (or a point) at the city's centre; window.cim.analysis.run(kind,
// request) runs any request. The panel adds its own <section> to the sidebar.

/** @import { CityViewer } from "./city-viewer.js" */

/** The panel's words; Chinese first (the platform's users are a Chinese city's planners). */
export const MESSAGES = {
  "zh-CN": {
    heading: "规划分析",
    run: "分析",
    clear: "清除",
    running: "计算中…",
    failed: "分析失败",
    kinds: {
      sunlight: "日照分析",
      shadow: "阴影分析",
      sightline: "通视分析",
      viewshed: "可视域分析",
      skyline: "天际线分析",
      heightlimit: "控高分析",
      flood: "淹没分析",
    },
    sunlight: "住宅 {count} 栋，日照不足 {threshold} 小时 {below} 栋",
    shadow: "阴影比例 {min}–{max}，平均日照 {mean} 小时",
    sightline: "{visible}",
    visible: "通视",
    blocked: "被遮挡：{what}，距离 {distance} 米",
    viewshed: "可见 {share}%，可见建筑 {buildings} 栋",
    skyline: "最大仰角 {max}°，构成天际线的建筑 {buildings} 栋",
    heightlimit: "检查 {checked} 栋，超高 {exceeding} 栋",
    flood: "淹没面积 {area} 平方米，最大水深 {depth} 米，涉及建筑 {buildings} 栋",
    terrain: "地形",
  },
  en: {
    heading: "Planning analyses",
    run: "Analyse",
    clear: "Clear",
    running: "Computing…",
    failed: "Analysis failed",
    kinds: {
      sunlight: "Sunlight hours",
      shadow: "Shadow",
      sightline: "Line of sight",
      viewshed: "Viewshed",
      skyline: "Skyline",
      heightlimit: "Height limit",
      flood: "Flood",
    },
    sunlight: "{count} residential buildings, {below} below {threshold} h of sun",
    shadow: "shadowed share {min}–{max}, mean sun {mean} h",
    sightline: "{visible}",
    visible: "visible",
    blocked: "blocked by {what}, {distance} m away",
    viewshed: "{share}% visible, {buildings} buildings seen",
    skyline: "highest elevation {max}°, {buildings} buildings form it",
    heightlimit: "{checked} buildings checked, {exceeding} above the limit",
    flood: "{area} m² flooded, deepest {depth} m, {buildings} buildings reached",
    terrain: "terrain",
  },
};

/** @typedef {keyof typeof MESSAGES["en"]["kinds"]} Kind */
/** @typedef {{ type: string, coordinates: any }} Geometry */
/** @typedef {{ type: "Feature", geometry: Geometry, properties: Record<string, any> }} Feature */
/** @typedef {{ kind: Kind, summary: Record<string, any>, geojson: { features: Feature[] } }} Answer */

const KINDS = /** @type {Kind[]} */ (["sunlight", "shadow", "sightline", "viewshed", "skyline", "heightlimit", "flood"]);
/** half the side of the default square, metres */
const HALF = 150;

/**
 * @param {string} text
 * @param {Record<string, unknown>} values
 */
function fill(text, values) {
  return text.replace(/\{(\w+)\}/g, (_, name) => String(values[name] ?? ""));
}

/** @param {CityViewer} viewer */
export function analysisTool(viewer) {
  /** @type {"zh-CN" | "en"} */
  let lang = "zh-CN";
  const section = document.createElement("section");
  section.className = "panel";
  section.id = "analysis-panel";
  section.setAttribute("aria-labelledby", "analysis-heading");
  section.innerHTML = `
    <h2 id="analysis-heading"></h2>
    <div class="sun-row">
      <select id="analysis-kind"></select>
      <button type="button" id="analysis-run" class="tool-button"></button>
      <button type="button" id="analysis-clear" class="link-button"></button>
    </div>
    <p id="analysis-result" class="muted" aria-live="polite"></p>`;
  const anchor = document.getElementById("feature-panel");
  if (anchor?.parentElement) anchor.parentElement.insertBefore(section, anchor);
  else document.getElementById("sidebar")?.appendChild(section);
  const kindSelect = /** @type {HTMLSelectElement} */ (section.querySelector("#analysis-kind"));
  const runButton = /** @type {HTMLButtonElement} */ (section.querySelector("#analysis-run"));
  const clearButton = /** @type {HTMLButtonElement} */ (section.querySelector("#analysis-clear"));
  const result = /** @type {HTMLElement} */ (section.querySelector("#analysis-result"));
  const heading = /** @type {HTMLElement} */ (section.querySelector("#analysis-heading"));

  const overlay = new Cesium.CustomDataSource("analysis");
  viewer.cesium.dataSources.add(overlay);
  /** @type {Answer | null} */
  let last = null;

  function words() {
    return MESSAGES[lang];
  }

  function label() {
    const t = words();
    heading.textContent = t.heading;
    runButton.textContent = t.run;
    clearButton.textContent = t.clear;
    const chosen = kindSelect.value || "sunlight";
    kindSelect.replaceChildren(
      ...KINDS.map((kind) => {
        const option = document.createElement("option");
        option.value = kind;
        option.textContent = t.kinds[kind];
        return option;
      }),
    );
    kindSelect.value = chosen;
    if (last) result.textContent = describe(last);
  }

  /** the city's centre: [lon, lat] degrees, and the ground height there */
  function centre() {
    const city = viewer.city;
    const b = city?.bounds;
    const lon = city?.origin?.lon ?? (b ? (b.west + b.east) / 2 : 0);
    const lat = city?.origin?.lat ?? (b ? (b.south + b.north) / 2 : 0);
    return { lon, lat, height: city?.origin?.height ?? 0 };
  }

  /** a square of 2·HALF metres around the centre, as a ring of [lon, lat] */
  function square() {
    const { lon, lat } = centre();
    const dLat = HALF / 111_320;
    const dLon = HALF / (111_320 * Math.cos((lat * Math.PI) / 180));
    return [
      [lon - dLon, lat - dLat],
      [lon + dLon, lat - dLat],
      [lon + dLon, lat + dLat],
      [lon - dLon, lat + dLat],
    ];
  }

  /**
   * The request the panel sends for a kind.
   * @param {Kind} kind
   * @returns {Record<string, unknown>}
   */
  function defaultRequest(kind) {
    const ring = square();
    const { lon, lat, height } = centre();
    switch (kind) {
      case "sunlight":
        return { area: ring, step: 20 };
      case "shadow":
        return { area: ring, start: 10, end: 14, step: 60 };
      case "sightline":
        return { from: [...ring[0], 1.6], to: [...ring[2], 1.6] };
      case "viewshed":
        return { observer: [lon, lat], radius: HALF };
      case "skyline":
        return { viewpoint: [lon, lat], radius: 500, azimuth_step: 2 };
      case "heightlimit":
        return { zone: ring, limit: 15 };
      case "flood":
        return { region: ring, level: height + 3 };
    }
  }

  /** @param {Answer} answer */
  function describe(answer) {
    const t = words();
    const s = answer.summary;
    /** @param {number} v @param {number} [d] */
    const n = (v, d = 1) => (Number.isFinite(v) ? v.toFixed(d) : "–");
    switch (answer.kind) {
      case "sunlight":
        return fill(t.sunlight, { count: s.count, below: s.below_count, threshold: s.threshold });
      case "shadow":
        return fill(t.shadow, {
          min: n(Math.min(...s.shadow_fraction), 2),
          max: n(Math.max(...s.shadow_fraction), 2),
          mean: n(s.mean_sun_hours),
        });
      case "sightline":
        return s.visible
          ? t.visible
          : fill(t.blocked, { what: s.obstruction.building ?? t.terrain, distance: n(s.obstruction.distance) });
      case "viewshed":
        return fill(t.viewshed, { share: n(100 * s.visible_share), buildings: s.buildings.length });
      case "skyline":
        return fill(t.skyline, { max: n(s.max_elevation), buildings: s.buildings.length });
      case "heightlimit":
        return fill(t.heightlimit, { checked: s.checked, exceeding: s.exceeding_count });
      case "flood":
        return fill(t.flood, { area: n(s.area_m2, 0), depth: n(s.max_depth, 2), buildings: s.buildings_count });
    }
  }

  /**
   * The colour of a feature of an answer.
   * @param {Kind} kind
   * @param {Record<string, any>} p
   */
  function colour(kind, p) {
    if (kind === "sunlight") return p.below ? Cesium.Color.RED : Cesium.Color.LIMEGREEN;
    if (kind === "flood") return p.part === "water" ? Cesium.Color.DODGERBLUE : Cesium.Color.ORANGE;
    if (kind === "viewshed") return p.visible ? Cesium.Color.LIMEGREEN : Cesium.Color.RED;
    if (kind === "heightlimit") return p.part === "zone" ? Cesium.Color.YELLOW : Cesium.Color.RED;
    if (kind === "sightline") return p.part === "hidden" || p.visible === false ? Cesium.Color.RED : Cesium.Color.LIMEGREEN;
    if (kind === "shadow") return Cesium.Color.BLACK;
    return Cesium.Color.CYAN;
  }

  /** @param {Answer} answer */
  function draw(answer) {
    overlay.entities.removeAll();
    const ground = centre().height;
    for (const feature of answer.geojson.features) {
      const p = feature.properties ?? {};
      const c = colour(answer.kind, p);
      const height = Number.isFinite(p.top) ? p.top + 0.5 : Number.isFinite(p.level) ? p.level : ground + 1;
      const g = feature.geometry;
      const polygons = g.type === "Polygon" ? [g.coordinates] : g.type === "MultiPolygon" ? g.coordinates : [];
      for (const rings of polygons) {
        if (!rings.length) continue;
        overlay.entities.add({
          polygon: {
            hierarchy: new Cesium.PolygonHierarchy(
              Cesium.Cartesian3.fromDegreesArray(rings[0].flat()),
              rings.slice(1).map((/** @type {number[][]} */ hole) => new Cesium.PolygonHierarchy(Cesium.Cartesian3.fromDegreesArray(hole.flat()))),
            ),
            height,
            material: c.withAlpha(answer.kind === "shadow" ? 0.25 : 0.55),
          },
          properties: p,
        });
      }
      if (g.type === "LineString") {
        const coords = /** @type {number[][]} */ (g.coordinates);
        const positions = coords.map(([x, y, z]) => Cesium.Cartesian3.fromDegrees(x, y, Number.isFinite(z) ? z : ground + 1.6));
        overlay.entities.add({ polyline: { positions, width: 3, material: c }, properties: p });
      }
      if (g.type === "Point") {
        const [x, y, z] = g.coordinates;
        overlay.entities.add({
          position: Cesium.Cartesian3.fromDegrees(x, y, Number.isFinite(z) ? z : ground),
          point: { pixelSize: 10, color: c },
          properties: p,
        });
      }
    }
    viewer.unsettle();
  }

  /**
   * Run an analysis on the server and draw its answer.
   * @param {Kind} [kind]  default: the panel's choice
   * @param {Record<string, unknown>} [request]  default: the panel's request for the kind
   * @returns {Promise<Answer>}
   */
  async function run(kind, request) {
    const k = kind ?? /** @type {Kind} */ (kindSelect.value);
    const body = request ?? defaultRequest(k);
    result.textContent = words().running;
    const response = await fetch(`/api/analysis/${k}`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    const answer = await response.json();
    if (!response.ok) {
      result.textContent = `${words().failed}: ${answer.error ?? response.status}`;
      throw new Error(answer.error ?? `HTTP ${response.status}`);
    }
    last = answer;
    draw(answer);
    result.textContent = describe(answer);
    return answer;
  }

  function clear() {
    overlay.entities.removeAll();
    last = null;
    result.textContent = "";
    viewer.unsettle();
  }

  /** @param {"zh-CN" | "en"} language */
  function setLanguage(language) {
    lang = language in MESSAGES ? language : "zh-CN";
    label();
  }

  runButton.addEventListener("click", () => {
    run().catch((error) => viewer.reportError(words().failed, error));
  });
  clearButton.addEventListener("click", clear);
  viewer.on("reset", clear);
  label();
  return {
    run,
    clear,
    setLanguage,
    defaultRequest,
    /** the overlay's entities, drawn */
    get overlay() {
      return overlay;
    },
    get last() {
      return last;
    },
  };
}
