// Measuring: click two points in the scene; the viewer draws the segment and labels its
// length, horizontal distance and height difference. Positions come from the depth buffer
// (scene.pickPosition), so they land on buildings, terrain or point clouds alike.

const Cesium = window.Cesium;

export function setupMeasure({ viewer, $, onChange }) {
  const button = $("measure-toggle");
  const clear = $("measure-clear");
  const out = $("measure-result");
  const scene = viewer.scene;
  scene.pickTranslucentDepth = true;
  let active = false;
  let first = null;
  const drawn = [];

  function setActive(on) {
    active = on;
    first = null;
    button.setAttribute("aria-pressed", String(on));
    button.textContent = on ? "Click two points…" : "Measure distance";
    scene.canvas.style.cursor = on ? "crosshair" : "";
  }

  function pointAt(x, y) {
    const p = scene.pickPosition(new Cesium.Cartesian2(x, y));
    return Cesium.defined(p) ? p : null;
  }

  function describe(a, b) {
    const ca = Cesium.Cartographic.fromCartesian(a);
    const cb = Cesium.Cartographic.fromCartesian(b);
    const geodesic = new Cesium.EllipsoidGeodesic(ca, cb);
    const horizontal = geodesic.surfaceDistance;
    const vertical = cb.height - ca.height;
    return { distance: Cesium.Cartesian3.distance(a, b), horizontal, vertical };
  }

  function draw(a, b, m) {
    const mid = Cesium.Cartesian3.midpoint(a, b, new Cesium.Cartesian3());
    drawn.push(
      viewer.entities.add({
        polyline: { positions: [a, b], width: 3, material: Cesium.Color.fromCssColorString("#4fc3f7"), depthFailMaterial: Cesium.Color.fromCssColorString("#4fc3f7").withAlpha(0.4) },
      }),
      viewer.entities.add({
        position: mid,
        label: {
          text: `${m.distance.toFixed(2)} m`,
          font: "14px sans-serif",
          fillColor: Cesium.Color.WHITE,
          showBackground: true,
          backgroundColor: Cesium.Color.fromCssColorString("#101418").withAlpha(0.8),
          disableDepthTestDistance: Number.POSITIVE_INFINITY,
        },
      }),
    );
    out.textContent = `Length ${m.distance.toFixed(2)} m · horizontal ${m.horizontal.toFixed(2)} m · height ${m.vertical >= 0 ? "+" : ""}${m.vertical.toFixed(2)} m`;
    scene.requestRender();
    onChange?.();
  }

  // one measurement between canvas pixels (x1, y1) and (x2, y2); null where nothing is hit
  function measure(x1, y1, x2, y2) {
    const a = pointAt(x1, y1);
    const b = pointAt(x2, y2);
    if (!a || !b) return null;
    const m = describe(a, b);
    draw(a, b, m);
    return m;
  }

  function clearAll() {
    drawn.splice(0).forEach((e) => viewer.entities.remove(e));
    out.textContent = "";
    first = null;
    scene.requestRender();
  }

  button.addEventListener("click", () => setActive(!active));
  clear.addEventListener("click", clearAll);

  // returns true when the click was consumed by a measurement
  function onClick(x, y) {
    if (!active) return false;
    const p = pointAt(x, y);
    if (!p) return true;
    if (!first) {
      first = p;
      out.textContent = "First point set; click the second.";
    } else {
      draw(first, p, describe(first, p));
      setActive(false);
    }
    return true;
  }

  return { measure, clear: clearAll, onClick, get active() { return active; } };
}
