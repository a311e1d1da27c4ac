// Sunlight and shadows: a date, a time of day in local solar time at the city, and a
// shadows switch. Planners scrub the time to see which courtyards stay in shade.

const Cesium = window.Cesium;

export function setupSun({ viewer, $, lon, onChange }) {
  const date = $("sun-date");
  const time = $("sun-time");
  const label = $("sun-time-label");
  const shadows = $("sun-shadows");

  function apply() {
    const [y, m, d] = (date.value || "2024-06-21").split("-").map(Number);
    const hours = Number(time.value);
    // local solar time → UTC: 15° of longitude an hour
    const utcMinutes = Math.round((hours - lon / 15) * 60);
    const when = new Date(Date.UTC(y, m - 1, d, 0, 0, 0));
    when.setUTCMinutes(utcMinutes);
    viewer.clock.currentTime = Cesium.JulianDate.fromDate(when);
    const hh = Math.floor(hours);
    const mm = Math.round((hours - hh) * 60);
    label.textContent = `${String(hh).padStart(2, "0")}:${String(mm).padStart(2, "0")} solar time`;
    viewer.shadows = shadows.checked;
    viewer.scene.globe.shadows = shadows.checked ? Cesium.ShadowMode.RECEIVE_ONLY : Cesium.ShadowMode.DISABLED;
    viewer.scene.requestRender();
    onChange?.();
  }

  viewer.shadowMap.softShadows = false;
  viewer.shadowMap.size = 2048;
  viewer.shadowMap.maximumDistance = 4000;
  for (const el of [date, time, shadows]) el.addEventListener("input", apply);
  apply();

  // scripting: set(dateISO, hours, shadows)
  return {
    set(isoDate, hours, withShadows) {
      if (isoDate) date.value = isoDate;
      if (Number.isFinite(hours)) time.value = String(hours);
      if (typeof withShadows === "boolean") shadows.checked = withShadows;
      apply();
    },
  };
}
