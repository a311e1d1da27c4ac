// cim viewer: loads /city/city.json, shows every layer it lists, and lets the
// user inspect the attributes of a building (or any 3D Tiles feature).
//
// Scripting / test surface: window.cim (see the bottom of this file).

import { loaderFor } from "./js/layers.js";
import { featureProperties, formatValue, isTileFeature } from "./js/properties.js";
import { setupSearch } from "./js/search.js";
import { setupSun } from "./js/sun.js";
import { setupMeasure } from "./js/measure.js";
import { setupBim } from "./js/bim.js";
import { setupPointCloud } from "./js/pointcloud.js";

const Cesium = window.Cesium;
const CITY_URL = new URL("/city/city.json", window.location.href).href;
const HIGHLIGHT = Cesium.Color.fromCssColorString("#f2b33d");
const GLOBE_COLOR = Cesium.Color.fromCssColorString("#4a5057");

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------- state

const cim = {
  viewer: null,
  city: null,
  layers: {}, // id -> Cesium3DTileset (3D Tiles layers only)
  handles: {}, // id -> loader handle (every loaded layer)
  ready: false,
  frames: 0, // frames rendered so far (tests wait on it after a change)
  errors: [],
  selection: null, // properties of the selected feature, or null
  pickAt,
  lookAt,
  select,
  clearSelection,
  flyHome,
  whenReady,
  canvasCenter,
  search: null, // search(text) -> results (when the city has a search index)
  setSun: null, // setSun(isoDate, solarHours, shadows)
  measure: null, // measure(x1, y1, x2, y2) -> {distance, horizontal, vertical} in metres, or null
  bim: null, // {setClassVisible(name, visible), setStorey(name), setCut(enabled, height)}
  points: null, // {setMode("rgb"|"classification"|"elevation"|"intensity"), setClassVisible(code, visible), setSize(px)}
  clearMeasurements: null,
  showResult: null, // showResult(result): fly to a search result and select it
};
window.cim = cim;

let loadingDone = false;
let settleFrames = 0;
let settleTimer = null;
let readyWaiters = [];
let selected = null; // { feature, color, layerId }

// ---------------------------------------------------------------- messages

function showMessage(text, level = "error") {
  const box = $("messages");
  const p = document.createElement("p");
  p.className = `message ${level}`;
  p.textContent = text;
  box.append(p);
}

function reportError(message, detail) {
  const text = detail ? `${message}: ${detailText(detail)}` : message;
  cim.errors.push(text);
  showMessage(text, "error");
  console.error(`[cim] ${text}`);
}

function detailText(detail) {
  if (detail instanceof Error) return detail.message;
  if (typeof detail === "string") return detail;
  if (detail && Number.isFinite(detail.statusCode)) return `HTTP ${detail.statusCode}`; // RequestErrorEvent
  if (detail && typeof detail.message === "string") return detail.message;
  try {
    return JSON.stringify(detail);
  } catch {
    return String(detail);
  }
}

window.addEventListener("unhandledrejection", (event) => {
  reportError("Unexpected error", event.reason);
  event.preventDefault();
});

function setStatus(text) {
  $("load-status").textContent = text;
}

// ---------------------------------------------------------------- viewer

function createViewer() {
  const viewer = new Cesium.Viewer("cesium-container", {
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
  const scene = viewer.scene;
  scene.globe.baseColor = GLOBE_COLOR;
  scene.globe.showGroundAtmosphere = false;
  scene.backgroundColor = Cesium.Color.fromCssColorString("#101418");
  viewer.clock.shouldAnimate = false;

  viewer.homeButton.viewModel.command.beforeExecute.addEventListener((event) => {
    event.cancel = true;
    flyHome(1.5);
  });

  scene.postRender.addEventListener(onPostRender);

  const handler = new Cesium.ScreenSpaceEventHandler(scene.canvas);
  const measuring = setupMeasure({ viewer, $, onChange: () => scene.requestRender() });
  cim.measure = measuring.measure;
  cim.clearMeasurements = measuring.clear;
  handler.setInputAction((click) => {
    if (measuring.onClick(click.position.x, click.position.y)) return;
    select(click.position.x, click.position.y);
  }, Cesium.ScreenSpaceEventType.LEFT_CLICK);

  return viewer;
}

// The sun: 10:00 local solar time on 21 June unless the user changes it (reproducible shading).
function setSun(lon) {
  const sun = setupSun({ viewer: cim.viewer, $, lon, onChange: unsettle });
  cim.setSun = sun.set;
}

// ---------------------------------------------------------------- readiness

// `ready` is true once loading has finished and every visible 3D Tiles layer
// reports all tiles for the current view loaded. Camera moves through
// lookAt/flyHome reset it; it is re-established after a couple of frames.
function unsettle() {
  cim.ready = false;
  settleFrames = 0;
  if (!cim.viewer) return;
  cim.viewer.scene.requestRender();
  if (settleTimer === null) {
    // requestRenderMode renders only on demand; keep frames coming until settled.
    settleTimer = window.setInterval(() => cim.viewer.scene.requestRender(), 200);
  }
}

function onPostRender() {
  cim.frames += 1;
  if (cim.ready || !loadingDone) return;
  settleFrames += 1;
  if (settleFrames < 3) return;
  const pending = Object.values(cim.layers).filter((t) => t.show && !t.tilesLoaded);
  if (pending.length > 0) return;
  // imagery and terrain load with the globe's own tiles
  if (cim.viewer.scene.globe.show && !cim.viewer.scene.globe.tilesLoaded) return;
  cim.ready = true;
  window.clearInterval(settleTimer);
  settleTimer = null;
  setStatus(statusText());
  const waiters = readyWaiters;
  readyWaiters = [];
  waiters.forEach((resolve) => resolve(true));
}

function whenReady() {
  if (cim.ready) return Promise.resolve(true);
  return new Promise((resolve) => readyWaiters.push(resolve));
}

function statusText() {
  const n = Object.keys(cim.handles).length;
  const errs = cim.errors.length;
  return `${n} layer${n === 1 ? "" : "s"} loaded` + (errs ? ` · ${errs} error${errs === 1 ? "" : "s"}` : "");
}

// ---------------------------------------------------------------- camera

function cityBoundingSphere() {
  const b = cim.city?.bounds;
  if (b && [b.west, b.south, b.east, b.north].every(Number.isFinite)) {
    const lo = Number.isFinite(b.min_height) ? b.min_height : 0;
    const hi = Number.isFinite(b.max_height) ? b.max_height : lo;
    const corners = [];
    for (const lon of [b.west, b.east]) {
      for (const lat of [b.south, b.north]) {
        for (const h of [lo, hi]) corners.push(Cesium.Cartesian3.fromDegrees(lon, lat, h));
      }
    }
    return Cesium.BoundingSphere.fromPoints(corners);
  }
  const first = Object.values(cim.layers)[0];
  return first ? first.boundingSphere : null;
}

function flyHome(duration = 0) {
  const sphere = cityBoundingSphere();
  if (!sphere) return;
  const range = Math.max(sphere.radius * 2.2, 150);
  cim.viewer.camera.flyToBoundingSphere(sphere, {
    offset: new Cesium.HeadingPitchRange(0, Cesium.Math.toRadians(-40), range),
    duration,
    complete: unsettle,
  });
  unsettle();
}

// Look straight down at (lon, lat, height) from `range` metres above it.
function lookAt(lon, lat, height = 0, range = 300) {
  cim.viewer.camera.setView({
    destination: Cesium.Cartesian3.fromDegrees(lon, lat, height + range),
    orientation: { heading: 0, pitch: -Cesium.Math.PI_OVER_TWO, roll: 0 },
  });
  unsettle();
}

function canvasCenter() {
  const rect = cim.viewer.scene.canvas.getBoundingClientRect();
  return { x: rect.left + rect.width / 2, y: rect.top + rect.height / 2 };
}

// ---------------------------------------------------------------- picking

function pickFeature(x, y) {
  const picked = cim.viewer.scene.pick(new Cesium.Cartesian2(x, y));
  return isTileFeature(picked) ? picked : null;
}

// Properties of the 3D Tiles feature at canvas pixel (x, y), or null.
function pickAt(x, y) {
  const feature = pickFeature(x, y);
  return feature ? featureProperties(feature) : null;
}

function layerIdOf(tileset) {
  for (const [id, t] of Object.entries(cim.layers)) if (t === tileset) return id;
  return null;
}

// Select the feature at canvas pixel (x, y): highlight + attribute panel.
function select(x, y) {
  const feature = pickFeature(x, y);
  if (!feature) {
    clearSelection();
    return null;
  }
  if (selected && selected.feature === feature) return cim.selection;
  clearSelection();
  const props = featureProperties(feature);
  const layerId = layerIdOf(feature.tileset);
  selected = { feature, color: feature.color, layerId };
  feature.color = HIGHLIGHT;
  cim.selection = props;
  renderFeaturePanel(layerId, props);
  cim.viewer.scene.requestRender();
  return props;
}

function clearSelection() {
  if (selected) {
    try {
      if (!selected.feature.tileset.isDestroyed()) selected.feature.color = selected.color;
    } catch {
      // the tile holding the feature was unloaded; nothing left to restore
    }
  }
  selected = null;
  cim.selection = null;
  $("feature-body").hidden = true;
  $("feature-hint").hidden = false;
  $("feature-props").tBodies[0].replaceChildren();
  cim.viewer?.scene.requestRender();
}

function renderFeaturePanel(layerId, props) {
  const layer = cim.handles[layerId]?.layer;
  const schema = layer?.schema ?? {};
  $("feature-layer").textContent = layer?.title ?? layerId ?? "Feature";
  const rows = Object.entries(props).map(([key, value]) => {
    const tr = document.createElement("tr");
    tr.dataset.key = key;
    const th = document.createElement("th");
    th.scope = "row";
    th.textContent = key;
    const td = document.createElement("td");
    const text = formatValue(value, schema[key]);
    td.textContent = text;
    td.dataset.value = JSON.stringify(value);
    if (text === "") td.className = "empty";
    tr.append(th, td);
    return tr;
  });
  $("feature-props").tBodies[0].replaceChildren(...rows);
  $("feature-hint").hidden = true;
  $("feature-body").hidden = false;
}

// ---------------------------------------------------------------- layers

function addLayerRow(layer, state) {
  const li = document.createElement("li");
  li.dataset.layer = layer.id;
  const label = document.createElement("label");
  const box = document.createElement("input");
  box.type = "checkbox";
  // a layer the city marks "visible": false loads hidden (dense point clouds, say)
  box.checked = state === "loaded" && layer.visible !== false;
  box.disabled = state !== "loaded";
  box.id = `layer-${layer.id}`;
  const title = document.createElement("span");
  title.className = "title";
  title.textContent = layer.title ?? layer.id;
  title.title = `${layer.kind} · ${layer.url ?? ""}`;
  label.append(box, title);
  li.append(label);
  if (Number.isFinite(layer.count)) {
    const count = document.createElement("span");
    count.className = "count";
    count.textContent = layer.count.toLocaleString("en");
    li.append(count);
  }
  if (state === "loaded") {
    box.addEventListener("change", () => {
      const handle = cim.handles[layer.id];
      handle.show = box.checked;
      if (!box.checked && selected && selected.layerId === layer.id) clearSelection();
      cim.viewer.scene.requestRender();
      if (box.checked) unsettle();
    });
    const zoom = document.createElement("button");
    zoom.type = "button";
    zoom.className = "icon-button";
    zoom.title = "Zoom to layer";
    zoom.setAttribute("aria-label", `Zoom to ${layer.title ?? layer.id}`);
    zoom.innerHTML =
      '<svg viewBox="0 0 16 16" width="14" height="14" aria-hidden="true" fill="none" stroke="currentColor" stroke-width="1.5">' +
      '<circle cx="8" cy="8" r="4.5"/><path d="M8 1v3M8 12v3M1 8h3M12 8h3"/></svg>';
    zoom.addEventListener("click", () => zoomToLayer(layer.id));
    li.append(zoom);
  } else {
    li.classList.add(state);
    li.title =
      state === "unsupported"
        ? `Layers of kind "${layer.kind}" are not supported by this viewer yet`
        : "This layer could not be loaded (see the message above)";
  }
  $("layer-list").append(li);
}

function zoomToLayer(id) {
  const sphere = cim.handles[id]?.boundingSphere;
  if (!sphere) return;
  cim.viewer.camera.flyToBoundingSphere(sphere, {
    offset: new Cesium.HeadingPitchRange(0, Cesium.Math.toRadians(-40), Math.max(sphere.radius * 2.2, 100)),
    duration: 1.5,
    complete: unsettle,
  });
}

async function loadLayer(layer) {
  const loader = loaderFor(layer.kind);
  if (!loader) {
    console.warn(`[cim] layer "${layer.id}": kind "${layer.kind}" is not supported yet; skipped`);
    return { layer, state: "unsupported" };
  }
  try {
    const url = new URL(layer.url, CITY_URL).href;
    const handle = await loader(layer, { viewer: cim.viewer, url, reportError });
    return { layer, state: "loaded", handle };
  } catch (error) {
    reportError(`Layer "${layer.title ?? layer.id}" could not be loaded`, error);
    return { layer, state: "failed" };
  }
}

async function loadCity() {
  const response = await fetch(CITY_URL, { cache: "no-cache" });
  if (!response.ok) throw new Error(`${CITY_URL}: HTTP ${response.status}`);
  return response.json();
}

function describeCity(city) {
  const title = city.title ?? city.name ?? "City model";
  $("city-name").textContent = title;
  document.title = `${title} · cim viewer`;
  const parts = [];
  if (city.title && city.name) parts.push(city.name);
  if (city.crs) parts.push(city.crs);
  const n = (city.layers ?? []).length;
  parts.push(`${n} layer${n === 1 ? "" : "s"}`);
  $("city-meta").textContent = parts.join(" · ");
}

// ---------------------------------------------------------------- start

async function start() {
  cim.viewer = createViewer();
  $("feature-clear").addEventListener("click", clearSelection);

  let city;
  try {
    city = await loadCity();
  } catch (error) {
    reportError("The city description could not be loaded", error);
    setStatus("Failed to load the city");
    loadingDone = true;
    unsettle();
    return;
  }
  cim.city = city;
  describeCity(city);
  const origin = city.origin ?? {};
  const lon = Number.isFinite(origin.lon) ? origin.lon : (city.bounds?.west + city.bounds?.east) / 2;
  if (Number.isFinite(lon)) setSun(lon);

  const layers = Array.isArray(city.layers) ? city.layers : [];
  setStatus(`Loading ${layers.length} layer${layers.length === 1 ? "" : "s"}…`);
  const results = await Promise.all(layers.map(loadLayer));
  for (const { layer, state, handle } of results) {
    if (handle) {
      if (layer.visible === false) handle.show = false;
      cim.handles[layer.id] = handle;
      if (handle.tileset) cim.layers[layer.id] = handle.tileset;
    }
    addLayerRow(layer, state);
  }
  loadingDone = true;
  flyHome(0);
  const bimLayer = layers.find((l) => l.kind === "bim" && cim.layers[l.id]);
  if (bimLayer) cim.bim = setupBim({ layer: bimLayer, tileset: cim.layers[bimLayer.id], origin: city.origin, $, onChange: unsettle });
  const pointLayer = layers.find((l) => l.kind === "pointcloud" && cim.layers[l.id]);
  if (pointLayer) cim.points = setupPointCloud({ layer: pointLayer, tileset: cim.layers[pointLayer.id], origin: city.origin, $, onChange: unsettle });
  const search = setupSearch({ city, $, api: { reportError }, renderResult: showResult });
  if (search) cim.search = search.run;
}

// Fly to a search result, then select what is under the camera; if that is another feature
// (or nothing), show the result's own attributes from the index.
async function showResult(result) {
  lookAt(result.lon, result.lat, result.top ?? 0, 150);
  await whenReady();
  const canvas = cim.viewer.scene.canvas;
  const props = select(canvas.clientWidth / 2, canvas.clientHeight / 2);
  const layer = cim.handles[result.layer]?.layer;
  const idKey = layer?.id_property ?? "id";
  if (!props || String(props[idKey]) !== String(result.id)) {
    clearSelection();
    cim.selection = result.properties;
    renderFeaturePanel(result.layer, result.properties);
  }
  return cim.selection;
}
cim.showResult = showResult;

start().catch((error) => {
  reportError("The viewer failed to start", error);
  loadingDone = true;
  if (cim.viewer) unsettle();
  else cim.ready = true;
});
