// @ts-check
// The query and statistics panel over the server's /api/query and /api/stats (the national CIM
// platform standard's query kinds): place name / address / keyword text, combined conditions,
// a layer, and an area drawn in the scene (a box, a polygon, a circle from its centre and a
// point on its edge, a line with a buffer). Results are coloured in the scene and listed; a row flies to a point inside
// the feature's footprint and selects it by id; the result set downloads as CSV or GeoJSON.
// Statistics of the same filters (counts, footprint and floor areas, height histogram, groups)
// are charted with ECharts, loaded from the server (/vendor/echarts/) when first needed.
// It is a panel registered through js/workspace.js, with its messages in ../i18n/query.js.

/** @import { CityViewer } from "./city-viewer.js" */
/** @import { PlainValue } from "./properties.js" */

import messages from "../i18n/query.js";
import { hasApi } from "./api.js";
import { formatNumber, onLanguageChange, t } from "./i18n.js";
import { localized } from "./properties.js";
import { drawPreview, lonLatAt, MIN_POINTS, outline } from "./scene-draw.js";
import { registerPanel } from "./workspace.js";

const ECHARTS_URL = "/vendor/echarts/echarts.esm.min.mjs";
const SHAPE = Cesium.Color.fromCssColorString("#4fc3f7");
const PAGE = 200;

/** @import { DrawMode } from "./scene-draw.js" */

/**
 * A query's filters, as /api/query takes them (geometry in degrees).
 * @typedef {object} QueryFilters
 * @property {string} [text]
 * @property {string} [where]
 * @property {string} [layer]
 * @property {number[]} [bbox]  west, south, east, north
 * @property {number[]} [polygon]  lon, lat, ...
 * @property {number[]} [point]  lon, lat
 * @property {number} [radius]  metres
 * @property {number[]} [line]  lon, lat, ...
 * @property {number} [buffer]  metres
 */

/**
 * @typedef {object} QueryResult
 * @property {string} layer
 * @property {string} id
 * @property {string} title
 * @property {number} lon
 * @property {number} lat
 * @property {number} [top]
 * @property {[number, number]} [anchor]
 * @property {Record<string, PlainValue>} properties
 */

/**
 * @param {string} tag
 * @param {Record<string, string>} [attrs]
 * @param {(Node | string)[]} [children]
 */
function el(tag, attrs = {}, children = []) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith("data-")) node.setAttribute(k, v);
    else /** @type {Record<string, unknown>} */ (/** @type {unknown} */ (node))[k] = v;
  }
  node.append(...children);
  return node;
}

/**
 * The query string of a set of filters.
 * @param {QueryFilters} filters
 * @param {Record<string, string>} [extra]
 */
export function queryString(filters, extra = {}) {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(filters)) {
    if (value === undefined || value === "" || (Array.isArray(value) && !value.length)) continue;
    params.set(key, Array.isArray(value) ? value.map((v) => Number(v.toFixed(7))).join(",") : String(value));
  }
  for (const [key, value] of Object.entries(extra)) params.set(key, value);
  return params.toString();
}

/**
 * The distance in metres between two lon/lat points (degrees) along the WGS84 ellipsoid.
 * @param {number} lon0
 * @param {number} lat0
 * @param {number} lon1
 * @param {number} lat1
 */
export function surfaceDistance(lon0, lat0, lon1, lat1) {
  if (lon0 === lon1 && lat0 === lat1) return 0;
  return new Cesium.EllipsoidGeodesic(Cesium.Cartographic.fromDegrees(lon0, lat0), Cesium.Cartographic.fromDegrees(lon1, lat1)).surfaceDistance;
}

/** @param {CityViewer} viewer */
export function queryTool(viewer) {
  const body = registerPanel({ id: "query", title: "query.title", order: 15, messages, hidden: true });
  const panel = /** @type {HTMLElement} */ (body.parentElement);

  // ------------------------------------------------------------ the form
  const text = /** @type {HTMLInputElement} */ (el("input", { id: "query-text", type: "search", autocomplete: "off" }));
  const where = /** @type {HTMLInputElement} */ (el("input", { id: "query-where", type: "text", autocomplete: "off", spellcheck: "false" }));
  const layerSelect = /** @type {HTMLSelectElement} */ (el("select", { id: "query-layer" }));
  const drawButtons = /** @type {Record<DrawMode, HTMLButtonElement>} */ ({});
  for (const mode of /** @type {DrawMode[]} */ (["box", "polygon", "radius", "line"])) {
    drawButtons[mode] = /** @type {HTMLButtonElement} */ (el("button", { type: "button", className: "tool-button small", "data-draw": mode }));
  }
  const finish = /** @type {HTMLButtonElement} */ (el("button", { type: "button", className: "tool-button small", id: "query-finish" }));
  finish.hidden = true;
  const clearArea = /** @type {HTMLButtonElement} */ (el("button", { type: "button", className: "link-button", id: "query-clear-area" }));
  const radius = /** @type {HTMLInputElement} */ (el("input", { id: "query-radius", type: "number", min: "0", max: "100000", step: "any", value: "200" }));
  const buffer = /** @type {HTMLInputElement} */ (el("input", { id: "query-buffer", type: "number", min: "0", max: "10000", step: "5", value: "20" }));
  const areaNote = el("p", { id: "query-area", className: "muted" });
  const run = /** @type {HTMLButtonElement} */ (el("button", { type: "button", className: "tool-button", id: "query-run" }));
  const csv = /** @type {HTMLAnchorElement} */ (el("a", { id: "query-csv", className: "link-button" }));
  const geojson = /** @type {HTMLAnchorElement} */ (el("a", { id: "query-geojson", className: "link-button" }));
  csv.hidden = geojson.hidden = true;
  const summary = el("p", { id: "query-summary", className: "muted" });
  const list = el("ol", { id: "query-results", className: "search-results" });
  const groupBy = /** @type {HTMLSelectElement} */ (el("select", { id: "stats-group" }));
  const statsRun = /** @type {HTMLButtonElement} */ (el("button", { type: "button", className: "tool-button", id: "stats-run" }));
  const statsTable = el("table", { id: "stats-table", className: "stats-table" });
  const chart = el("div", { id: "stats-chart", className: "stats-chart" });
  chart.hidden = true;
  /** @type {Record<string, HTMLElement>} */
  const labels = {};
  const label = (/** @type {string} */ key, /** @type {HTMLElement} */ control) => {
    labels[key] = el("span", { className: "muted field-label" });
    return el("label", { className: "field" }, [labels[key], control]);
  };
  body.append(
    label("query.text", text),
    label("query.where", where),
    label("query.layer", layerSelect),
    el("div", { className: "field" }, [
      (labels["query.spatial"] = el("span", { className: "muted field-label" })),
      el("div", { className: "sun-row wrap" }, [...Object.values(drawButtons), finish]),
    ]),
    el("div", { className: "sun-row" }, [label("query.radius", radius), label("query.buffer", buffer)]),
    el("div", { className: "sun-row" }, [areaNote, clearArea]),
    el("div", { className: "sun-row" }, [run, csv, geojson]),
    summary,
    list,
    el("div", { className: "sun-row" }, [groupBy, statsRun]),
    statsTable,
    chart,
  );

  // ------------------------------------------------------------ state
  /** @type {{ mode: DrawMode, points: number[][] } | null} */
  let drawing = null;
  /** @type {{ mode: DrawMode, points: number[][] } | null} the area drawn */
  let area = null;
  const shapes = viewer.cesium.scene.primitives.add(new Cesium.PolylineCollection());
  /** @type {QueryResult[]} */
  let results = [];
  /** @type {{ total: number, count: number, fuzzy?: boolean } | null} */
  let lastPage = null;
  /** @type {any} */
  let chartInstance = null;
  /** @type {Record<string, unknown> | null} */
  let lastStats = null;
  let apiOk = false;
  /** @type {Set<() => void>} */
  const runListeners = new Set();

  function filters() {
    /** @type {QueryFilters} */
    const f = {};
    if (text.value.trim()) f.text = text.value.trim();
    if (where.value.trim()) f.where = where.value.trim();
    if (layerSelect.value) f.layer = layerSelect.value;
    if (area) {
      const flat = area.points.flatMap(([lon, lat]) => [lon, lat]);
      if (area.mode === "box") {
        const [[a, b], [c, d]] = area.points;
        f.bbox = [Math.min(a, c), Math.min(b, d), Math.max(a, c), Math.max(b, d)];
      } else if (area.mode === "polygon") f.polygon = flat;
      else if (area.mode === "radius") {
        f.point = flat.slice(0, 2);
        f.radius = Number(radius.value) || 0;
      } else if (area.mode === "line") {
        f.line = flat;
        f.buffer = Number(buffer.value) || 0;
      }
    }
    return f;
  }

  // ------------------------------------------------------------ drawing (js/scene-draw.js)
  /** the outline of an area, as lon/lat/height points */
  function shapeOutline(/** @type {{ mode: DrawMode, points: number[][] }} */ a) {
    return outline(a, { radius: Number(radius.value) || 0, closed: !drawing });
  }

  function drawShapes() {
    const a = drawing ?? area;
    drawPreview(shapes, a ? shapeOutline(a) : [], SHAPE);
    viewer.cesium.scene.requestRender();
    describeArea();
  }

  function describeArea() {
    if (drawing) {
      areaNote.textContent = t(`query.drawHint.${drawing.mode}`);
    } else if (!area) {
      areaNote.textContent = t("query.area.none");
    } else {
      areaNote.textContent = t(`query.area.${area.mode}`, { n: area.points.length, radius: Number(radius.value) || 0, buffer: Number(buffer.value) || 0 });
    }
    finish.hidden = !(drawing && drawing.mode !== "box");
    for (const [mode, button] of Object.entries(drawButtons)) button.setAttribute("aria-pressed", String(drawing?.mode === mode));
  }

  /** @param {DrawMode} mode */
  function startDrawing(mode) {
    drawing = { mode, points: [] };
    viewer.cesium.scene.canvas.style.cursor = "crosshair";
    drawShapes();
  }

  function endDrawing() {
    const d = drawing;
    drawing = null;
    viewer.cesium.scene.canvas.style.cursor = "";
    if (d && d.points.length >= MIN_POINTS[d.mode]) area = d;
    drawShapes();
  }

  /**
   * Set the area without drawing (scripts, tests, share links).
   * @param {DrawMode | null} mode
   * @param {number[][]} [points]  [lon, lat] pairs
   * @param {{ radius?: number, buffer?: number }} [sizes]
   */
  function setArea(mode, points = [], sizes = {}) {
    drawing = null;
    if (sizes.radius !== undefined) radius.value = String(sizes.radius);
    if (sizes.buffer !== undefined) buffer.value = String(sizes.buffer);
    area = mode ? { mode, points: points.map(([lon, lat, h]) => [lon, lat, h ?? viewer.city?.origin?.height ?? 0]) } : null;
    drawShapes();
  }

  viewer.on("click", (click) => {
    if (!drawing) return;
    click.preventDefault();
    const p = lonLatAt(viewer, click.x, click.y);
    if (!p) return;
    drawing.points.push(p);
    if (drawing.mode === "radius" && drawing.points.length === 2) {
      // centre, then a point on the edge: the radius is their distance on the ellipsoid
      const [[lon0, lat0], [lon1, lat1]] = drawing.points;
      radius.value = String(Math.round(10 * surfaceDistance(lon0, lat0, lon1, lat1)) / 10);
      drawing.points.length = 1;
      endDrawing();
    } else if (drawing.mode === "box" && drawing.points.length === 2) endDrawing();
    else drawShapes();
  });

  // ------------------------------------------------------------ querying
  /**
   * Run the query: list the results, colour them in the scene. Resolves with the page.
   * @param {QueryFilters} [given]  default: the form's
   */
  async function runQuery(given) {
    const f = given ?? filters();
    const response = await fetch("/api/query", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ ...f, limit: PAGE, offset: 0 }),
    });
    const page = await response.json().catch(() => null);
    if (!response.ok) {
      const detail = page?.error ?? page?.message ?? `HTTP ${response.status}`;
      summary.textContent = `${t("query.failed")}: ${detail}`;
      throw new Error(String(detail));
    }
    results = page.results ?? [];
    lastPage = { total: page.total, count: page.count ?? results.length, fuzzy: page.fuzzy };
    viewer.markResults(results);
    renderResults();
    const qs = queryString(f);
    csv.href = `/api/query?${qs}${qs ? "&" : ""}format=csv&limit=100000`;
    geojson.href = `/api/query?${qs}${qs ? "&" : ""}format=geojson&limit=100000`;
    csv.download = "query.csv";
    geojson.download = "query.geojson";
    csv.hidden = geojson.hidden = false;
    for (const listener of runListeners) listener();
    return page;
  }

  function renderResults() {
    if (!lastPage) {
      summary.textContent = "";
      list.replaceChildren();
      return;
    }
    summary.textContent = lastPage.total
      ? t("query.total", { total: lastPage.total, count: results.length }) + (lastPage.fuzzy ? ` ${t("query.fuzzy")}` : "")
      : t("query.none");
    list.replaceChildren(
      ...results.map((r, i) => {
        const button = el("button", { type: "button", className: "search-hit", "data-id": String(r.id), "data-layer": r.layer }, [
          el("span", { className: "hit-title" }, [String(localized(r.properties, "name") || r.title || r.id)]),
          el("span", { className: "hit-sub muted" }, [String(localized(r.properties, "address") ?? r.id)]),
        ]);
        button.addEventListener("click", () => void showResult(i));
        return el("li", {}, [button]);
      }),
    );
  }

  /**
   * Fly over a point inside a result's footprint and select it by id.
   * @param {number} index
   */
  async function showResult(index) {
    const r = results[index];
    if (!r) return null;
    const [lon, lat] = Array.isArray(r.anchor) && r.anchor.length >= 2 ? r.anchor : [r.lon, r.lat];
    viewer.lookAt(lon, lat, r.top ?? viewer.city?.origin?.height ?? 0, 150);
    await viewer.whenReady();
    viewer.selectById(r.layer, String(r.id), r.properties);
    return viewer.selection?.properties ?? null;
  }

  // ------------------------------------------------------------ statistics
  /** @param {QueryFilters} [given] */
  async function runStats(given) {
    const f = given ?? filters();
    const qs = queryString(f, groupBy.value ? { group_by: groupBy.value } : {});
    const response = await fetch(`/api/stats?${qs}`);
    const stats = await response.json().catch(() => null);
    if (!response.ok) {
      statsTable.replaceChildren(el("caption", {}, [`${t("stats.failed")}: ${stats?.error ?? response.status}`]));
      throw new Error(String(stats?.error ?? response.status));
    }
    lastStats = stats;
    renderStats();
    await renderChart();
    return stats;
  }

  function renderStats() {
    if (!lastStats) return;
    const s = /** @type {{ count: number, footprint_area_m2: number, floor_area_m2: number }} */ (lastStats);
    const row = (/** @type {string} */ key, /** @type {string} */ name, /** @type {number} */ value) =>
      el("tr", { "data-stat": key }, [el("th", {}, [t(name)]), el("td", {}, [formatNumber(value, { maximumFractionDigits: 1 })])]);
    statsTable.replaceChildren(
      row("count", "stats.count", s.count),
      row("footprint_area_m2", "stats.footprint", s.footprint_area_m2),
      row("floor_area_m2", "stats.floor", s.floor_area_m2),
    );
  }

  async function renderChart() {
    if (!lastStats) return;
    const s = /** @type {{ height_histogram?: { edges: number[], counts: number[] }, groups?: { key: string, count: number }[] }} */ (lastStats);
    let echarts;
    try {
      const url = ECHARTS_URL;
      echarts = await import(url);
    } catch (error) {
      viewer.reportError(t("stats.chartFailed"), error);
      return;
    }
    chart.hidden = false;
    chartInstance ??= echarts.init(chart, "dark", { renderer: "canvas" });
    const groups = s.groups ?? [];
    const hist = s.height_histogram ?? { edges: [], counts: [] };
    const byGroup = groups.length > 0;
    const names = byGroup
      ? groups.map((g) => String(g.key))
      : hist.counts.map((_, i) => `${formatNumber(hist.edges[i], { maximumFractionDigits: 0 })}–${formatNumber(hist.edges[i + 1], { maximumFractionDigits: 0 })}`);
    const values = byGroup ? groups.map((g) => g.count) : hist.counts;
    chartInstance.setOption(
      {
        backgroundColor: "transparent",
        animation: false,
        title: { text: byGroup ? t(`stats.group.${groupBy.value}`) : t("stats.heights"), textStyle: { fontSize: 12 } },
        grid: { left: 40, right: 8, top: 28, bottom: 40 },
        tooltip: {},
        xAxis: { type: "category", data: names, axisLabel: { rotate: 30, fontSize: 10 } },
        yAxis: { type: "value", name: t("stats.count"), nameTextStyle: { fontSize: 10 } },
        series: [{ type: "bar", data: values, itemStyle: { color: "#4fc3f7" } }],
      },
      true,
    );
  }

  // ------------------------------------------------------------ texts
  function translate() {
    for (const [key, node] of Object.entries(labels)) node.textContent = t(key);
    text.placeholder = t("query.textPlaceholder");
    where.placeholder = t("query.wherePlaceholder");
    for (const [mode, button] of Object.entries(drawButtons)) button.textContent = t(`query.draw.${mode}`);
    finish.textContent = t("query.draw.finish");
    clearArea.textContent = t("query.draw.clear");
    run.textContent = t("query.run");
    csv.textContent = t("query.csv");
    geojson.textContent = t("query.geojson");
    statsRun.textContent = t("stats.run");
    const chosen = groupBy.value;
    groupBy.replaceChildren(
      new Option(t("stats.noGroup"), ""),
      ...["district", "use", "year_band", "layer"].map((g) => new Option(t(`stats.group.${g}`), g)),
    );
    groupBy.value = chosen;
    groupBy.setAttribute("aria-label", t("stats.groupBy"));
    const layerChosen = layerSelect.value;
    layerSelect.replaceChildren(
      new Option(t("query.allLayers"), ""),
      ...[...viewer.layers.values()].filter((l) => l.handle.tileset).map((l) => new Option(l.spec.title ?? l.id, l.id)),
    );
    layerSelect.value = layerChosen;
    describeArea();
    renderResults();
    renderStats();
    if (lastStats && chartInstance) void renderChart();
  }

  // ------------------------------------------------------------ wiring
  for (const [mode, button] of /** @type {[DrawMode, HTMLButtonElement][]} */ (Object.entries(drawButtons))) {
    button.addEventListener("click", () => (drawing?.mode === mode ? endDrawing() : startDrawing(mode)));
  }
  finish.addEventListener("click", endDrawing);
  clearArea.addEventListener("click", () => setArea(null));
  radius.addEventListener("input", drawShapes);
  buffer.addEventListener("input", drawShapes);
  const report = (/** @type {string} */ key) => (/** @type {unknown} */ error) => console.warn(`[cim] ${t(key)}`, error);
  run.addEventListener("click", () => void runQuery().catch(report("query.failed")));
  for (const input of [text, where]) {
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter") void runQuery().catch(report("query.failed"));
    });
  }
  statsRun.addEventListener("click", () => void runStats().catch(report("stats.failed")));
  onLanguageChange(translate);

  viewer.on("cityload", async () => {
    // the panel shows where the server has the query API
    apiOk = await hasApi("/api/query");
    panel.hidden = !apiOk;
  });
  viewer.on("layeradded", translate);
  viewer.on("reset", () => {
    drawing = null;
    area = null;
    text.value = where.value = layerSelect.value = groupBy.value = "";
    results = [];
    lastPage = null;
    lastStats = null;
    viewer.clearResults();
    statsTable.replaceChildren();
    chart.hidden = true;
    csv.hidden = geojson.hidden = true;
    drawShapes();
    renderResults();
  });
  translate();

  return {
    run: runQuery,
    stats: runStats,
    showResult,
    setArea,
    filters,
    /** the form's filters as a query string ("" when none) */
    state: () => queryString(filters()),
    /**
     * Fill the form from a query string (a share link) and run it.
     * @param {string} qs
     */
    async restore(qs) {
      const params = new URLSearchParams(qs);
      text.value = params.get("text") ?? "";
      where.value = params.get("where") ?? "";
      layerSelect.value = params.get("layer") ?? "";
      const nums = (/** @type {string} */ k) => (params.get(k) ?? "").split(",").filter(Boolean).map(Number);
      /** @type {number[][]} */
      const pairs = [];
      const pts = params.has("bbox") ? nums("bbox") : params.has("polygon") ? nums("polygon") : params.has("point") ? nums("point") : nums("line");
      for (let i = 0; i + 1 < pts.length; i += 2) pairs.push([pts[i], pts[i + 1]]);
      const mode = params.has("bbox") ? "box" : params.has("polygon") ? "polygon" : params.has("point") ? "radius" : params.has("line") ? "line" : null;
      setArea(mode, pairs, { radius: params.has("radius") ? Number(params.get("radius")) : undefined, buffer: params.has("buffer") ? Number(params.get("buffer")) : undefined });
      if (apiOk && qs) await runQuery();
    },
    get results() {
      return results;
    },
    /** @param {() => void} listener  called after every query that ran */
    onRun(listener) {
      runListeners.add(listener);
    },
  };
}
