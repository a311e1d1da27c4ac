// @ts-check
// Drawing in the scene with clicks, shared by the panels that ask for places (the query panel's
// area, the planning analyses' points and areas): the surface point under a click, the outline
// of a drawn shape (a box, a polygon, a circle round a point, a line) and its preview line.
// Pure helpers over a CityViewer: each panel keeps its own drawing state and click handler.

/** @import { CityViewer } from "./city-viewer.js" */

/** @typedef {"box" | "polygon" | "radius" | "line"} DrawMode */
/** @typedef {{ mode: DrawMode, points: number[][] }} Shape  points: [lon, lat, height] */

/** metres per degree of latitude, and of longitude at the equator (the preview only) */
const M_PER_DEG_LAT = 110_574;
const M_PER_DEG_LON = 111_320;

/** The fewest points that make each kind of shape. */
export const MIN_POINTS = /** @type {Record<DrawMode, number>} */ ({ box: 2, polygon: 3, radius: 1, line: 2 });

/**
 * The surface point under canvas pixel (x, y): the depth buffer (buildings, terrain, point
 * clouds), else the ellipsoid; null where the sky is.
 * @param {CityViewer} viewer
 * @param {number} x
 * @param {number} y
 * @returns {number[] | null} lon, lat (degrees), height (m)
 */
export function lonLatAt(viewer, x, y) {
  const scene = viewer.cesium.scene;
  const position = new Cesium.Cartesian2(x, y);
  let p = scene.pickPositionSupported ? scene.pickPosition(position) : undefined;
  if (!Cesium.defined(p)) p = viewer.cesium.camera.pickEllipsoid(position);
  if (!p) return null;
  const c = Cesium.Cartographic.fromCartesian(p);
  return [Cesium.Math.toDegrees(c.longitude), Cesium.Math.toDegrees(c.latitude), c.height];
}

/**
 * The outline of a shape as lon/lat/height points, a metre above its highest point.
 * @param {Shape} shape
 * @param {{ radius?: number, closed?: boolean }} [options]  the circle's radius (m); close a polygon
 * @returns {number[][]}
 */
export function outline(shape, options = {}) {
  const pts = shape.points;
  if (!pts.length) return [];
  const h = Math.max(...pts.map((p) => p[2] ?? 0)) + 1;
  if (shape.mode === "box" && pts.length === 2) {
    const [[w, s], [e, n]] = pts;
    return [[w, s], [e, s], [e, n], [w, n], [w, s]].map(([lon, lat]) => [lon, lat, h]);
  }
  if (shape.mode === "radius") {
    const [lon, lat] = pts[0];
    const r = options.radius ?? 0;
    const out = [];
    for (let i = 0; i <= 64; i++) {
      const ang = (2 * Math.PI * i) / 64;
      out.push([lon + (r * Math.cos(ang)) / (M_PER_DEG_LON * Math.cos(Cesium.Math.toRadians(lat))), lat + (r * Math.sin(ang)) / M_PER_DEG_LAT, h]);
    }
    return out;
  }
  const closed = shape.mode === "polygon" && pts.length > 2 && options.closed ? [...pts, pts[0]] : pts;
  return closed.map(([lon, lat]) => [lon, lat, h]);
}

/**
 * Add a preview line through `points` to `lines` (fewer than two points: none).
 * @param {Cesium.PolylineCollection} lines
 * @param {number[][]} points  lon, lat, height
 * @param {Cesium.Color} colour
 */
export function addLine(lines, points, colour) {
  if (points.length < 2) return;
  lines.add({
    positions: points.map(([lon, lat, h]) => Cesium.Cartesian3.fromDegrees(lon, lat, h)),
    width: 2.5,
    material: Cesium.Material.fromType("Color", { color: colour }),
  });
}

/**
 * Replace the lines of `lines` by one preview line through `points`.
 * @param {Cesium.PolylineCollection} lines
 * @param {number[][]} points  lon, lat, height
 * @param {Cesium.Color} colour
 */
export function drawPreview(lines, points, colour) {
  lines.removeAll();
  addLine(lines, points, colour);
}

/**
 * The area of a ring of lon/lat points in square metres (a local plane: fine for a city's plots).
 * @param {number[][]} ring
 */
export function ringArea(ring) {
  if (ring.length < 3) return 0;
  const lat0 = Cesium.Math.toRadians(ring[0][1]);
  const xy = ring.map(([lon, lat]) => [lon * M_PER_DEG_LON * Math.cos(lat0), lat * M_PER_DEG_LAT]);
  let twice = 0;
  for (let i = 0; i < xy.length; i++) {
    const [x1, y1] = xy[i];
    const [x2, y2] = xy[(i + 1) % xy.length];
    twice += x1 * y2 - x2 * y1;
  }
  return Math.abs(twice) / 2;
}
