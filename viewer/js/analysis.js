// @ts-check
// Planning analyses (日照、阴影、通视、可视域、天际线、控高、淹没): a panel that asks the server
// (POST /api/analysis/{kind}, computed in numpy over the city's surface model) and draws the
// answer's GeoJSON as an overlay. The numbers come from the server only: the browser draws.
//
// The planner picks the inputs in the scene (js/scene-draw.js, as the query panel draws its
// area): a point (the observer of a viewshed, the viewpoint of a skyline), two points (the ends
// of a line of sight: the first click is the observer), or an area drawn by clicks (sunlight,
// shadow, height limit, flood), plus a number (the height limit, the water level, the radius).
// What is not picked defaults to the city's centre (a square of 2·HALF metres, or its middle).
// window.cim.analysis.run(kind, request) runs any request; request(kind) is what the panel
// would send. It is a panel registered through js/workspace.js, with its messages in
// ../i18n/analysis.js; its texts follow the language toggle. A skyline is charted with ECharts
// (served at /vendor/echarts/, loaded when first needed), today's and, when a proposal is given,
// the proposal's.
//
// Massing (体块比对): a proposal, a footprint drawn in the scene (or read from a GeoJSON file)
// and a height, is drawn as an extruded block and sent with every analysis; the server puts it
// in place of the buildings it covers. Sunlight (hours lost per neighbour), skyline (its change)
// and height limit (breaches) answer before and after, shown in a table under the result.

/** @import { CityViewer } from "./city-viewer.js" */

import messages from "../i18n/analysis.js";
import { formatNumber, onLanguageChange, t } from "./i18n.js";
import { addLine, lonLatAt, outline, ringArea } from "./scene-draw.js";
import { registerPanel } from "./workspace.js";

/** @typedef {"sunlight" | "shadow" | "sightline" | "viewshed" | "skyline" | "heightlimit" | "flood"} Kind */
/** @typedef {{ type: string, coordinates: any }} Geometry */
/** @typedef {{ type: "Feature", geometry: Geometry, properties: Record<string, any> }} Feature */
/** @typedef {{ kind: Kind, summary: Record<string, any>, geojson: { features: Feature[] } }} Answer */
/**
 * The places picked in the scene, [lon, lat, height] each (height: of the surface clicked).
 * @typedef {object} Inputs
 * @property {number[]} [point]  viewshed's observer, skyline's viewpoint
 * @property {number[]} [from]  line of sight: the observer
 * @property {number[]} [to]  line of sight: the target
 * @property {number[][]} [area]  a ring (3 or more corners)
 * @property {number[][]} [proposal]  a proposed massing: its footprint (its height apart)
 */
/** @typedef {"point" | "from" | "to" | "area" | "proposal"} PickStep */

const KINDS = /** @type {Kind[]} */ (["sunlight", "shadow", "sightline", "viewshed", "skyline", "heightlimit", "flood"]);
/** what each kind asks to be picked */
const PICKS = /** @type {Record<Kind, "point" | "line" | "area">} */ ({
  sunlight: "area",
  shadow: "area",
  sightline: "line",
  viewshed: "point",
  skyline: "point",
  heightlimit: "area",
  flood: "area",
});
/** the kinds that take a number, and which */
const VALUE_KINDS = /** @type {Kind[]} */ (["heightlimit", "flood", "viewshed", "skyline"]);
/** half the side of the default square, metres */
const HALF = 150;
/** eye (and target) height above the surface of a line of sight, metres */
const EYE = 1.6;
const PICK_COLOUR = Cesium.Color.fromCssColorString("#ffd54f");
const PROPOSAL_COLOUR = Cesium.Color.fromCssColorString("#ff9800");
const ECHARTS_URL = "/vendor/echarts/echarts.esm.min.mjs";
/** the most neighbours listed with the hours of sun they lose */
const MAX_ROWS = 10;

/** @param {PickStep | undefined} step */
const drawsArea = (step) => step === "area" || step === "proposal";

/** @param {CityViewer} viewer */
export function analysisTool(viewer) {
  const body = registerPanel({ id: "analysis", title: "analysis.title", order: 58, messages });

  /**
   * @template {keyof HTMLElementTagNameMap} K
   * @param {K} tag
   * @param {Record<string, string>} [attrs]
   * @returns {HTMLElementTagNameMap[K]}
   */
  function element(tag, attrs = {}) {
    const el = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) el.setAttribute(name, value);
    return el;
  }

  const kindSelect = element("select", { id: "analysis-kind" });
  const pickButton = element("button", { type: "button", id: "analysis-pick", class: "tool-button small", "aria-pressed": "false" });
  const finishButton = element("button", { type: "button", id: "analysis-finish", class: "tool-button small" });
  finishButton.hidden = true;
  const resetInputs = element("button", { type: "button", id: "analysis-default", class: "link-button" });
  const hint = element("p", { id: "analysis-hint", class: "muted", "aria-live": "polite" });
  const inputNote = element("p", { id: "analysis-input", class: "muted" });
  const valueLabel = element("span", { class: "muted field-label" });
  const valueInput = element("input", { id: "analysis-value", type: "number", step: "0.5" });
  const valueField = element("label", { class: "field", id: "analysis-value-field" });
  valueField.append(valueLabel, valueInput);
  const proposalButton = element("button", { type: "button", id: "analysis-proposal", class: "tool-button small", "aria-pressed": "false" });
  const proposalLabel = element("span", { class: "muted field-label" });
  const proposalHeight = element("input", { id: "analysis-proposal-height", type: "number", min: "0.1", max: "1000", step: "1", value: "60" });
  const proposalField = element("label", { class: "field", id: "analysis-proposal-field" });
  proposalField.append(proposalLabel, proposalHeight);
  const proposalFile = element("input", { type: "file", id: "analysis-proposal-file", accept: ".geojson,.json,application/geo+json,.ifc,.glb,.gltf" });
  const proposalFileLabel = element("span", { class: "muted field-label" });
  const proposalFileField = element("label", { class: "field", id: "analysis-proposal-file-field" });
  proposalFileField.append(proposalFileLabel, proposalFile);
  const runButton = element("button", { type: "button", id: "analysis-run", class: "tool-button" });
  const clearButton = element("button", { type: "button", id: "analysis-clear", class: "link-button" });
  const result = element("p", { id: "analysis-result", class: "muted", "aria-live": "polite" });
  const chart = element("div", { id: "analysis-chart", class: "stats-chart" });
  chart.hidden = true;
  const compare = element("table", { id: "analysis-compare", class: "compare-table" });
  compare.hidden = true;
  const row = (/** @type {HTMLElement[]} */ ...children) => {
    const div = element("div", { class: "sun-row wrap" });
    div.append(...children);
    return div;
  };
  body.append(row(kindSelect), row(pickButton, proposalButton, finishButton, resetInputs), hint, inputNote, valueField, proposalField, proposalFileField, row(runButton, clearButton), result, compare, chart);

  const overlay = new Cesium.CustomDataSource("analysis");
  void viewer.cesium.dataSources.add(overlay);
  const scene = viewer.cesium.scene;
  const pickLines = scene.primitives.add(new Cesium.PolylineCollection());
  const pickPoints = scene.primitives.add(new Cesium.PointPrimitiveCollection());
  const massing = new Cesium.CustomDataSource("analysis-proposal");
  void viewer.cesium.dataSources.add(massing);

  /** @type {Answer | null} */
  let last = null;
  /** the last failure's detail, shown again in another language */
  let failure = "";
  /** @type {Inputs} */
  let inputs = {};
  /** @type {{ step: PickStep, points: number[][] } | null} */
  let picking = null;
  let missed = false;
  /** @type {Partial<Record<Kind, number>>} the number given for each kind */
  const values = {};
  /** @type {any} the ECharts instance of the skyline chart, once loaded */
  let chartInstance = null;
  /** the ground height under the proposal, as the server stood it (null: not asked yet) */
  let proposalBase = /** @type {number | null} */ (null);
  /** what the drawn block shows (ring, base and height), "" for none */
  let drawnProposal = "";
  /** a proposal given as a model file (IFC, glTF/GLB): sent with each request as multipart */
  let proposalModel = /** @type {File | null} */ (null);
  /** where a glTF proposal stands ([lon, lat]): see readProposalFile */
  let modelAt = /** @type {number[] | null} */ (null);
  /** the model file's plan ([lon, lat] ring) and height, as the server's last answer gave them */
  let modelShape = /** @type {{ ring: number[][], height: number } | null} */ (null);

  /** @returns {Kind} */
  function kind() {
    return /** @type {Kind} */ (kindSelect.value || "sunlight");
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

  /** @param {Kind} k */
  function defaultValue(k) {
    if (k === "heightlimit") return 15;
    if (k === "flood") return Math.round((centre().height + 3) * 10) / 10;
    if (k === "viewshed") return HALF;
    if (k === "skyline") return 500;
    return 0;
  }

  /** the proposal's height, metres */
  function proposalMetres() {
    const v = Number(proposalHeight.value);
    return Number.isFinite(v) && v > 0 ? v : 60;
  }

  /** @param {Kind} k */
  function valueOf(k) {
    return values[k] ?? defaultValue(k);
  }

  /**
   * The request the panel sends for a kind: the picked places, else the city's centre.
   * @param {Kind} [k]  default: the panel's choice
   * @returns {Record<string, unknown>}
   */
  function request(k = kind()) {
    if (proposalModel) {
      // an IFC places itself by its georeferencing; a glTF carries none (see readProposalFile)
      const placed = /\.(glb|gltf)$/i.test(proposalModel.name) ? { position: modelAt ?? [centre().lon, centre().lat] } : {};
      return { ...fields(k), proposal: placed };
    }
    return { ...fields(k), ...(inputs.proposal ? { proposal: { polygon: inputs.proposal.map(([lon, lat]) => [lon, lat]), height: proposalMetres() } } : {}) };
  }

  /**
   * A kind's own fields of the request (the proposal apart).
   * @param {Kind} k
   * @returns {Record<string, unknown>}
   */
  function fields(k) {
    const ring = inputs.area ? inputs.area.map(([lon, lat]) => [lon, lat]) : square();
    const c = centre();
    const point = inputs.point ? inputs.point.slice(0, 2) : [c.lon, c.lat];
    switch (k) {
      case "sunlight":
        return { area: ring, step: 20 };
      case "shadow":
        return { area: ring, start: 10, end: 14, step: 60 };
      case "sightline":
        return {
          from: inputs.from ? [inputs.from[0], inputs.from[1], EYE] : [...ring[0], EYE],
          to: inputs.to ? [inputs.to[0], inputs.to[1], EYE] : [...ring[2], EYE],
        };
      case "viewshed":
        return { observer: point, radius: valueOf(k) };
      case "skyline":
        return { viewpoint: point, radius: valueOf(k), azimuth_step: 2 };
      case "heightlimit":
        return { zone: ring, limit: valueOf(k) };
      case "flood":
        return { region: ring, level: valueOf(k) };
    }
  }

  // ------------------------------------------------------------------ texts

  /** @param {number} v @param {number} [digits] */
  const n = (v, digits = 1) => (Number.isFinite(v) ? formatNumber(v, { maximumFractionDigits: digits }) : "–");

  /** @param {Answer} answer */
  function describe(answer) {
    const s = answer.summary;
    switch (answer.kind) {
      case "sunlight": {
        const today = t("analysis.result.sunlight", { count: s.count, below: s.below_count, threshold: s.threshold });
        if (!s.after) return today;
        const lost = s.changes.filter((/** @type {{ lost: number | null }} */ c) => (c.lost ?? 0) > 0);
        const most = Math.max(0, ...lost.map((/** @type {{ lost: number }} */ c) => c.lost));
        return `${today}${t("list.separator")}${t("analysis.result.sunlightChange", { below: s.after.below_count, lost: lost.length, most: n(most, 3) })}`;
      }
      case "shadow":
        return t("analysis.result.shadow", {
          min: n(Math.min(...s.shadow_fraction), 2),
          max: n(Math.max(...s.shadow_fraction), 2),
          mean: n(s.mean_sun_hours),
        });
      case "sightline":
        return s.visible
          ? t("analysis.result.visible")
          : t("analysis.result.blocked", { what: s.obstruction.building ?? t("analysis.terrain"), distance: n(s.obstruction.distance) });
      case "viewshed":
        return t("analysis.result.viewshed", {
          share: formatNumber(s.visible_share, { style: "percent", maximumFractionDigits: 1 }),
          buildings: s.buildings.length,
        });
      case "skyline": {
        const today = t("analysis.result.skyline", { max: n(s.max_elevation), buildings: s.buildings.length });
        if (!s.after) return today;
        return `${today}${t("list.separator")}${t("analysis.result.skylineChange", { changed: s.changed_azimuths, rise: n(s.max_rise) })}`;
      }
      case "heightlimit": {
        const today = t("analysis.result.heightlimit", { checked: s.checked, exceeding: s.exceeding_count });
        if (!s.after) return today;
        const own = proposalBreach(s);
        const change = t("analysis.result.heightlimitChange", { exceeding: s.after.exceeding_count });
        const breach = own ? t("analysis.result.proposalBreach", { excess: n(own.excess, 3) }) : t("analysis.result.proposalWithin");
        return `${today}${t("list.separator")}${change}${t("list.separator")}${breach}`;
      }
      case "flood":
        return t("analysis.result.flood", { area: n(s.area_m2, 0), depth: n(s.max_depth, 2), buildings: s.buildings_count });
    }
  }

  /** @param {number[]} p */
  const place = (p) => `${n(p[0], 5)}, ${n(p[1], 5)}`;

  /** What the next request will be made of, in words. */
  function describeInputs() {
    const pick = PICKS[kind()];
    let text = t("analysis.input.default");
    if (pick === "point" && inputs.point) text = t("analysis.input.point", { lon: n(inputs.point[0], 5), lat: n(inputs.point[1], 5) });
    if (pick === "line" && inputs.from && inputs.to) {
      const a = Cesium.Cartographic.fromDegrees(inputs.from[0], inputs.from[1]);
      const b = Cesium.Cartographic.fromDegrees(inputs.to[0], inputs.to[1]);
      const distance = new Cesium.EllipsoidGeodesic(a, b).surfaceDistance;
      text = t("analysis.input.line", { from: place(inputs.from), to: place(inputs.to), distance: n(distance) });
    }
    if (pick === "area" && inputs.area) text = t("analysis.input.area", { n: inputs.area.length, area: n(ringArea(inputs.area), 0) });
    if (proposalModel) text += t("list.separator") + t("analysis.input.proposalModel", { name: proposalModel.name });
    else if (inputs.proposal) {
      text += t("list.separator") + t("analysis.input.proposal", { n: inputs.proposal.length, height: proposalMetres() });
    }
    return text;
  }

  function showState() {
    const k = kind();
    pickButton.textContent = t(`analysis.pick.${PICKS[k]}`);
    pickButton.setAttribute("aria-pressed", String(picking !== null));
    finishButton.hidden = !drawsArea(picking?.step);
    proposalButton.setAttribute("aria-pressed", String(picking?.step === "proposal"));
    finishButton.disabled = (picking?.points.length ?? 0) < 3;
    hint.textContent = missed ? t("analysis.missed") : picking ? t(`analysis.hint.${picking.step}`) : "";
    inputNote.textContent = describeInputs();
    valueField.hidden = !VALUE_KINDS.includes(k);
    if (!valueField.hidden) {
      valueLabel.textContent = t(`analysis.value.${k}`);
      if (document.activeElement !== valueInput) valueInput.value = String(valueOf(k));
    }
  }

  function translate() {
    runButton.textContent = t("analysis.run");
    clearButton.textContent = t("analysis.clear");
    finishButton.textContent = t("analysis.pick.finish");
    resetInputs.textContent = t("analysis.pick.reset");
    proposalButton.textContent = t("analysis.pick.proposal");
    proposalLabel.textContent = t("analysis.proposalHeight");
    proposalFileLabel.textContent = t("analysis.proposalFile");
    kindSelect.setAttribute("aria-label", t("analysis.kind"));
    const chosen = kindSelect.value || "sunlight";
    kindSelect.replaceChildren(...KINDS.map((k) => new Option(t(`analysis.kind.${k}`), k)));
    kindSelect.value = chosen;
    if (last) {
      result.textContent = describe(last);
      renderCompare(last);
    }
    else if (failure) result.textContent = `${t("analysis.failed")}: ${failure}`;
    showState();
    if (last?.kind === "skyline" && chartInstance) void renderChart(last);
  }

  // ------------------------------------------------------------------ picking in the scene

  /** The picked places, drawn: points as dots, the area (or the line of sight) as a line. */
  function drawPicks() {
    pickPoints.removeAll();
    const dots = drawsArea(picking?.step) ? (picking?.points ?? []) : [inputs.point, inputs.from, inputs.to].filter((p) => p !== undefined);
    for (const p of /** @type {number[][]} */ (dots)) {
      pickPoints.add({
        position: Cesium.Cartesian3.fromDegrees(p[0], p[1], p[2] ?? 0),
        pixelSize: 9,
        color: PICK_COLOUR,
        disableDepthTestDistance: Number.POSITIVE_INFINITY,
      });
    }
    pickLines.removeAll();
    /** @type {number[][][]} */
    const lines = [];
    if (picking && drawsArea(picking.step)) lines.push(outline({ mode: "polygon", points: picking.points }, { closed: false }));
    for (const which of /** @type {const} */ (["area", "proposal"])) {
      const ring = inputs[which];
      if (ring && picking?.step !== which) lines.push(outline({ mode: "polygon", points: ring }, { closed: true }));
    }
    if (inputs.from && inputs.to) lines.push([inputs.from, inputs.to].map(([x, y, h]) => [x, y, h + EYE]));
    for (const line of lines) addLine(pickLines, line, PICK_COLOUR);
    drawProposal();
    scene.requestRender();
  }

  /**
   * The proposal as an extruded block: from the ground under it (as the server stood it once an
   * answer says so; before, the lowest picked corner) up by its height.
   */
  function drawProposal() {
    const ring = proposalModel ? modelShape?.ring : inputs.proposal;
    const shown = ring && picking?.step !== "proposal";
    const base = shown ? (proposalBase ?? Math.min(...ring.map((p) => p[2] ?? 0))) : 0;
    const metres = proposalModel ? (modelShape?.height ?? 0) : proposalMetres();
    // the block's geometry is made in a worker, slowly under software rendering: keep it while
    // nothing about it changed
    const key = shown ? JSON.stringify([ring, base, metres]) : "";
    if (key === drawnProposal) return;
    drawnProposal = key;
    massing.entities.removeAll();
    if (!ring || !shown) {
      viewer.unsettle();
      return;
    }
    massing.entities.add({
      id: "analysis-proposal-block",
      polygon: {
        hierarchy: new Cesium.PolygonHierarchy(Cesium.Cartesian3.fromDegreesArray(ring.flatMap(([lon, lat]) => [lon, lat]))),
        height: base,
        extrudedHeight: base + metres,
        material: PROPOSAL_COLOUR.withAlpha(0.75),
        outline: true,
        outlineColor: PROPOSAL_COLOUR,
      },
      properties: { part: "proposal", height: metres, base, ...(proposalModel ? { file: proposalModel.name } : {}) },
    });
    viewer.unsettle();
  }

  /**
   * Read a proposal from a file: a model (IFC, glTF/GLB) is kept as it is and sent with each
   * request, the server placing and measuring it (its block drawn from the answer's plan; a glTF,
   * which carries no georeferencing, stands at the centre of the footprint drawn before it, else
   * at the picked point, else at the city's centre); from
   * GeoJSON, the first Polygon (a geometry, a Feature or a FeatureCollection's), its height from
   * the feature's `height` property if it has one.
   * @param {File} file
   */
  async function readProposalFile(file) {
    failure = "";
    if (/\.(ifc|glb|gltf)$/i.test(file.name)) {
      const ring = inputs.proposal;
      const at = ring ? [ring.reduce((a, p) => a + p[0], 0) / ring.length, ring.reduce((a, p) => a + p[1], 0) / ring.length] : (inputs.point?.slice(0, 2) ?? null);
      setInputs({ ...inputs, proposal: undefined });
      modelAt = at;
      proposalModel = file;
      showState();
      return;
    }
    try {
      const doc = JSON.parse(await file.text());
      const features = doc.type === "FeatureCollection" ? doc.features : doc.type === "Feature" ? [doc] : [{ type: "Feature", geometry: doc, properties: {} }];
      const found = (features ?? []).find((/** @type {Feature} */ f) => f?.geometry?.type === "Polygon");
      if (!found) throw new Error(t("analysis.proposalFileNoPolygon"));
      const ring = /** @type {number[][]} */ (found.geometry.coordinates[0]);
      const open = ring.length > 3 && ring[0][0] === ring.at(-1)?.[0] && ring[0][1] === ring.at(-1)?.[1] ? ring.slice(0, -1) : ring;
      const height = Number(found.properties?.height);
      if (Number.isFinite(height) && height > 0) proposalHeight.value = String(height);
      setInputs({ ...inputs, proposal: open.map(([lon, lat, h]) => [lon, lat, Number.isFinite(h) ? h : centre().height]) });
    } catch (error) {
      failure = `${file.name}: ${error instanceof Error ? error.message : String(error)}`;
      result.textContent = `${t("analysis.failed")}: ${failure}`;
    }
  }

  /** @param {PickStep} [step]  default: what the kind asks for */
  function startPicking(step) {
    const pick = PICKS[kind()];
    missed = false;
    picking = { step: step ?? (pick === "line" ? "from" : pick), points: [] };
    scene.canvas.style.cursor = "crosshair";
    drawPicks();
    showState();
  }

  function stopPicking() {
    picking = null;
    missed = false;
    scene.canvas.style.cursor = "";
    drawPicks();
    showState();
  }

  /** Take the drawn area (3 corners or more) as the input (the area, or the proposal's footprint). */
  function finishArea() {
    if (!picking || !drawsArea(picking.step) || picking.points.length < 3) return;
    if (picking.step === "proposal") {
      proposalBase = null;
      proposalModel = null;
      modelShape = null;
    }
    inputs = { ...inputs, [picking.step]: picking.points };
    stopPicking();
  }

  /**
   * Use the surface point under canvas pixel (x, y) for the step being picked; true if one was found.
   * @param {number} x @param {number} y
   */
  function pickAt(x, y) {
    if (!picking) return false;
    const p = lonLatAt(viewer, x, y);
    missed = p === null;
    if (p) {
      if (drawsArea(picking.step)) picking.points.push(p);
      else if (picking.step === "from") {
        inputs = { ...inputs, from: p, to: undefined };
        picking = { step: "to", points: [] };
      } else {
        inputs = { ...inputs, [picking.step]: p };
        stopPicking();
        return true;
      }
    }
    drawPicks();
    showState();
    return p !== null;
  }

  /**
   * Set the inputs without clicking (scripts, tests); {} goes back to the city's centre.
   * @param {Inputs} given
   */
  function setInputs(given) {
    if (given.proposal !== inputs.proposal) proposalBase = null;
    proposalModel = null;
    modelShape = null;
    modelAt = null;
    inputs = { ...given };
    stopPicking();
  }

  // ------------------------------------------------------------------ the answer

  /**
   * The colour of a feature of an answer.
   * @param {Kind} k
   * @param {Record<string, any>} p
   */
  function colour(k, p) {
    if (k === "sunlight") return p.below ? Cesium.Color.RED : Cesium.Color.LIMEGREEN;
    if (k === "flood") return p.part === "water" ? Cesium.Color.DODGERBLUE : Cesium.Color.ORANGE;
    if (k === "viewshed") return p.visible ? Cesium.Color.LIMEGREEN : Cesium.Color.RED;
    if (k === "heightlimit") return p.part === "zone" ? Cesium.Color.YELLOW : Cesium.Color.RED;
    if (k === "sightline") return p.part === "hidden" || p.visible === false ? Cesium.Color.RED : Cesium.Color.LIMEGREEN;
    if (k === "skyline") return p.part === "skyline_after" ? Cesium.Color.ORANGE : Cesium.Color.CYAN;
    if (k === "shadow") return Cesium.Color.BLACK;
    return Cesium.Color.CYAN;
  }

  /**
   * Draw an answer: a building's footprint on its top, water at its level, every other area
   * draped on the terrain and the buildings; lines and points at their heights.
   * @param {Answer} answer
   */
  function draw(answer) {
    overlay.entities.removeAll();
    const ground = centre().height;
    for (const feature of answer.geojson.features) {
      const p = feature.properties ?? {};
      const c = colour(answer.kind, p);
      const height = Number.isFinite(p.top) ? p.top + 0.5 : Number.isFinite(p.level) ? p.level : undefined;
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
            ...(height === undefined ? { classificationType: Cesium.ClassificationType.BOTH } : { height }),
            material: c.withAlpha(answer.kind === "shadow" ? 0.25 : 0.55),
          },
          properties: p,
        });
      }
      if (g.type === "LineString") {
        const coords = /** @type {number[][]} */ (g.coordinates);
        const positions = coords.map(([x, y, z]) => Cesium.Cartesian3.fromDegrees(x, y, Number.isFinite(z) ? z : ground + EYE));
        overlay.entities.add({ polyline: { positions, width: 3, material: c }, properties: p });
      }
      if (g.type === "Point") {
        const [x, y, z] = g.coordinates;
        overlay.entities.add({
          position: Cesium.Cartesian3.fromDegrees(x, y, Number.isFinite(z) ? z : ground),
          point: { pixelSize: 10, color: c, disableDepthTestDistance: Number.POSITIVE_INFINITY },
          properties: p,
        });
      }
    }
    viewer.unsettle();
  }

  /**
   * Run an analysis on the server and draw its answer.
   * @param {Kind} [k]  default: the panel's choice
   * @param {Record<string, unknown>} [given]  default: the panel's request for the kind
   * @returns {Promise<Answer>}
   */
  async function run(k, given) {
    const which = k ?? kind();
    const body = given ?? request(which);
    failure = "";
    result.textContent = t("analysis.running");
    /** @type {RequestInit} */
    let init = { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
    if (proposalModel && !given) {
      // the model goes up beside the request as multipart/form-data (too large for a JSON body)
      const form = new FormData();
      form.append("request", new Blob([JSON.stringify(body)], { type: "application/json" }));
      form.append("proposal", proposalModel, proposalModel.name);
      init = { method: "POST", body: form };
    }
    const response = await fetch(`/api/analysis/${which}`, init);
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) {
      failure = String(answer.error ?? response.status);
      last = null;
      result.textContent = `${t("analysis.failed")}: ${failure}`;
      throw new Error(answer.error ?? `HTTP ${response.status}`);
    }
    last = answer;
    const proposal = answer.summary.proposal;
    if (proposal && Number.isFinite(proposal.base)) {
      proposalBase = proposal.base;
      const plan = proposal.plan;
      if (proposalModel && plan) {
        const ring = /** @type {number[][]} */ (plan.type === "MultiPolygon" ? plan.coordinates[0][0] : plan.coordinates[0]);
        modelShape = { ring: ring.slice(0, -1), height: proposal.height };
      }
      drawProposal();
    }
    draw(answer);
    result.textContent = describe(answer);
    renderCompare(answer);
    if (answer.kind === "skyline") await renderChart(answer);
    else chart.hidden = true;
    return answer;
  }

  /**
   * Chart a skyline: elevation over azimuth, today's and the proposal's.
   * @param {Answer} answer
   */
  async function renderChart(answer) {
    let echarts;
    try {
      const url = ECHARTS_URL;
      echarts = await import(url);
    } catch (error) {
      viewer.reportError(t("analysis.chart.failed"), error);
      return;
    }
    const s = answer.summary;
    /** @param {(number | null)[]} elevation */
    const points = (elevation) => s.azimuths.map((/** @type {number} */ a, /** @type {number} */ i) => [a, elevation[i]]);
    const series = [{ name: t("analysis.chart.before"), type: "line", showSymbol: false, data: points(s.elevation), itemStyle: { color: "#4fc3f7" } }];
    if (s.after) series.push({ name: t("analysis.chart.after"), type: "line", showSymbol: false, data: points(s.after.elevation), itemStyle: { color: "#ff9800" } });
    chart.hidden = false;
    chartInstance ??= echarts.init(chart, "dark", { renderer: "canvas" });
    const axisLabel = { formatter: (/** @type {number} */ v) => formatNumber(v, { maximumFractionDigits: 1 }), fontSize: 10 };
    chartInstance.setOption(
      {
        backgroundColor: "transparent",
        animation: false,
        title: { text: t("analysis.chart.title"), textStyle: { fontSize: 12 } },
        legend: { top: 0, right: 0, textStyle: { fontSize: 10 } },
        grid: { left: 40, right: 8, top: 28, bottom: 36 },
        tooltip: { trigger: "axis" },
        xAxis: { type: "value", min: 0, max: 360, interval: 90, name: t("analysis.chart.azimuth"), nameLocation: "middle", nameGap: 22, axisLabel },
        yAxis: { type: "value", name: t("analysis.chart.elevation"), nameTextStyle: { fontSize: 10 }, axisLabel },
        series,
      },
      true,
    );
    chartInstance.resize();
  }

  /**
   * The proposal's own row of a height-limit answer after it (null: within the limit).
   * @param {Record<string, any>} s  the answer's summary
   * @returns {{ id: string, excess: number } | null}
   */
  function proposalBreach(s) {
    const id = s.proposal?.id;
    return s.after?.exceeding.find((/** @type {{ id: string }} */ r) => r.id === id) ?? null;
  }

  /**
   * The before/after rows of an answer with a proposal: key, label, and today's, the
   * proposal's and the change's number (null: none).
   * @param {Answer} answer
   * @returns {{ key: string, label: string, values: (number | null)[] }[]}
   */
  function compareRows(answer) {
    const s = answer.summary;
    if (!s.after) return [];
    switch (answer.kind) {
      case "sunlight": {
        /** @type {{ id: string, lost: number | null, mean_hours_before: number | null, mean_hours_after: number | null }[]} */
        const changes = s.changes;
        const lost = changes.filter((c) => (c.lost ?? 0) > 0).sort((a, b) => (b.lost ?? 0) - (a.lost ?? 0) || (a.id < b.id ? -1 : 1));
        return [
          { key: "below", label: t("analysis.compare.below"), values: [s.below_count, s.after.below_count, s.after.below_count - s.below_count] },
          ...lost.slice(0, MAX_ROWS).map((c) => ({
            key: `lost:${c.id}`,
            label: t("analysis.compare.neighbour", { id: c.id }),
            values: [c.mean_hours_before, c.mean_hours_after, -(c.lost ?? 0)],
          })),
        ];
      }
      case "heightlimit":
        return [
          {
            key: "exceeding",
            label: t("analysis.compare.exceeding"),
            values: [s.exceeding_count, s.after.exceeding_count, s.after.exceeding_count - s.exceeding_count],
          },
          { key: "proposal-excess", label: t("analysis.compare.proposalExcess"), values: [null, proposalBreach(s)?.excess ?? 0, null] },
        ];
      case "skyline":
        return [
          { key: "max-elevation", label: t("analysis.compare.maxElevation"), values: [s.max_elevation, s.after.max_elevation, null] },
          { key: "changed-azimuths", label: t("analysis.compare.changedAzimuths"), values: [null, s.changed_azimuths, null] },
          { key: "max-rise", label: t("analysis.compare.maxRise"), values: [null, null, s.max_rise] },
        ];
      default:
        return [];
    }
  }

  /**
   * Show an answer's before/after table (hidden when it has none); each cell carries its
   * number in `data-value`.
   * @param {Answer} answer
   */
  function renderCompare(answer) {
    const rows = compareRows(answer);
    compare.hidden = rows.length === 0;
    if (!rows.length) {
      compare.replaceChildren();
      return;
    }
    const head = element("tr");
    for (const key of ["item", "before", "after", "change"]) {
      const th = element("th", { scope: "col" });
      th.textContent = t(`analysis.compare.${key}`);
      head.append(th);
    }
    const trs = rows.map((r) => {
      const tr = element("tr", { "data-key": r.key });
      const th = element("th", { scope: "row" });
      th.textContent = r.label;
      tr.append(th);
      for (const v of r.values) {
        const td = element("td", { "data-value": JSON.stringify(v ?? null) });
        td.textContent = v === null || v === undefined ? "" : n(v, 3);
        tr.append(td);
      }
      return tr;
    });
    compare.replaceChildren(head, ...trs);
  }

  function clear() {
    overlay.entities.removeAll();
    chart.hidden = true;
    compare.hidden = true;
    compare.replaceChildren();
    last = null;
    failure = "";
    result.textContent = "";
    viewer.unsettle();
  }

  // ------------------------------------------------------------------ wiring

  kindSelect.addEventListener("change", () => {
    if (picking) stopPicking();
    else showState();
  });
  pickButton.addEventListener("click", () => (picking && picking.step !== "proposal" ? stopPicking() : startPicking()));
  proposalButton.addEventListener("click", () => (picking?.step === "proposal" ? stopPicking() : startPicking("proposal")));
  proposalHeight.addEventListener("input", () => {
    showState();
    drawProposal();
  });
  proposalFile.addEventListener("change", () => {
    const file = proposalFile.files?.[0];
    if (file) void readProposalFile(file).finally(() => (proposalFile.value = ""));
  });
  finishButton.addEventListener("click", finishArea);
  resetInputs.addEventListener("click", () => setInputs({}));
  valueInput.addEventListener("input", () => {
    const v = Number(valueInput.value);
    if (valueInput.value !== "" && Number.isFinite(v)) values[kind()] = v;
    else delete values[kind()];
    showState();
  });
  runButton.addEventListener("click", () => {
    run().catch((error) => viewer.reportError(t("analysis.failed"), error));
  });
  clearButton.addEventListener("click", clear);
  // while picking, clicks pick places instead of selecting
  viewer.on("click", (click) => {
    if (!picking) return;
    click.preventDefault();
    pickAt(click.x, click.y);
  });
  viewer.on("reset", () => {
    clear();
    inputs = {};
    for (const k of KINDS) delete values[k];
    proposalHeight.value = "60";
    proposalModel = null;
    modelShape = null;
    stopPicking();
  });
  viewer.on("cityload", showState);
  onLanguageChange(translate);
  translate();

  return {
    run,
    clear,
    request,
    setInputs,
    pickAt,
    finishArea,
    /** the places picked */
    get inputs() {
      return inputs;
    },
    /** the skyline chart's series, as drawn: name and [azimuth, elevation] points (null: none) */
    chartSeries() {
      if (!chartInstance || chart.hidden) return null;
      return chartInstance.getOption().series.map((/** @type {{ name: string, data: number[][] }} */ s) => ({ name: s.name, data: s.data }));
    },
    /** the overlay's entities, drawn */
    get overlay() {
      return overlay;
    },
    /** the proposal's extruded block (one entity while a proposal is given) */
    get massing() {
      return massing;
    },
    readProposalFile,
    get last() {
      return last;
    },
  };
}
