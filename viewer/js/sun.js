// @ts-check
// Sunlight and shadows: a date, a time of day in local solar time at the city, and a
// shadows switch. Planners scrub the time to see which courtyards stay in shade.
// The default, 10:00 on 21 June (index.html), makes the shading reproducible.

/** @import { CityViewer } from "./city-viewer.js" */

import { byId } from "./dom.js";
import { formatClock, onLanguageChange, t } from "./i18n.js";

/**
 * Cesium's shadow-map bias, which it exposes no API for (ShadowMap's `_primitiveBias`,
 * `_terrainBias`): the fields tuned here.
 * @typedef {{ normalOffsetScale: number, depthBias: number, normalShadingSmooth: number }} ShadowBias
 */

/**
 * Shadows without speckles ("shadow acne" where a surface shadows itself) and with softer
 * edges: four cascades (Cesium's most, its default for the sun) spread over a shorter distance,
 * percentage-closer filtering, and more depth and normal-offset bias than Cesium's defaults
 * (which suit small models, not 100 m buildings standing on kilometres of terrain).
 * @param {Cesium.ShadowMap} shadowMap
 */
function tuneShadows(shadowMap) {
  shadowMap.size = 2048;
  shadowMap.softShadows = true;
  shadowMap.maximumDistance = 2500;
  shadowMap.darkness = 0.4;
  const map = /** @type {{ _primitiveBias?: ShadowBias, _terrainBias?: ShadowBias }} */ (/** @type {unknown} */ (shadowMap));
  if (map._primitiveBias) Object.assign(map._primitiveBias, { normalOffsetScale: 0.4, depthBias: 0.0002, normalShadingSmooth: 0.1 });
  if (map._terrainBias) Object.assign(map._terrainBias, { normalOffsetScale: 0.8, depthBias: 0.0004 });
}

/** @param {CityViewer} viewer */
export function sunTool(viewer) {
  const date = byId("sun-date", HTMLInputElement);
  const time = byId("sun-time", HTMLInputElement);
  const label = byId("sun-time-label", HTMLElement);
  const shadows = byId("sun-shadows", HTMLInputElement);
  const cesium = viewer.cesium;
  /** the city's longitude: solar time is local to it */
  let lon = 0;

  function apply() {
    const [y, m, d] = (date.value || date.defaultValue).split("-").map(Number);
    const hours = Number(time.value);
    // local solar time → UTC: 15° of longitude an hour
    const when = new Date(Date.UTC(y, m - 1, d, 0, 0, 0));
    when.setUTCMinutes(Math.round((hours - lon / 15) * 60));
    cesium.clock.currentTime = Cesium.JulianDate.fromDate(when);
    const hh = Math.floor(hours);
    const mm = Math.round((hours - hh) * 60);
    label.textContent = t("sun.solarTime", { time: formatClock(hh, mm) });
    cesium.shadows = shadows.checked;
    cesium.scene.globe.shadows = shadows.checked ? Cesium.ShadowMode.RECEIVE_ONLY : Cesium.ShadowMode.DISABLED;
    viewer.unsettle();
  }

  /**
   * @param {string | null} [isoDate]  YYYY-MM-DD
   * @param {number | null} [hours]  local solar time
   * @param {boolean} [withShadows]
   */
  function set(isoDate, hours, withShadows) {
    if (isoDate) date.value = isoDate;
    if (Number.isFinite(hours)) time.value = String(hours);
    if (typeof withShadows === "boolean") shadows.checked = withShadows;
    apply();
  }

  tuneShadows(cesium.shadowMap);
  onLanguageChange(apply);
  for (const el of [date, time, shadows]) el.addEventListener("input", apply);

  viewer.on("cityload", ({ city }) => {
    const b = city.bounds;
    const cityLon = city.origin?.lon ?? (b ? (b.west + b.east) / 2 : NaN);
    if (!Number.isFinite(cityLon)) return;
    lon = cityLon;
    apply();
  });
  viewer.on("reset", () => set(date.defaultValue, Number(time.defaultValue), shadows.defaultChecked));
  return { set };
}
