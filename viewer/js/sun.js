// @ts-check
// Sunlight and shadows: a date, a time of day in local solar time at the city, and a
// shadows switch. Planners scrub the time to see which courtyards stay in shade.
// The default, 10:00 on 21 June (index.html), makes the shading reproducible.

/** @import { CityViewer } from "./city-viewer.js" */

import { byId } from "./dom.js";

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
    label.textContent = `${String(hh).padStart(2, "0")}:${String(mm).padStart(2, "0")} solar time`;
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

  cesium.shadowMap.softShadows = false;
  cesium.shadowMap.size = 2048;
  cesium.shadowMap.maximumDistance = 4000;
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
