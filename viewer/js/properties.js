// Reading and formatting the properties of a picked 3D Tiles feature.

const Cesium = window.Cesium;

export function isTileFeature(picked) {
  return picked instanceof Cesium.Cesium3DTileFeature;
}

// Value as something JSON can carry (for window.cim.pickAt and data-value).
export function plainValue(value) {
  if (value === undefined || value === null) return null;
  if (typeof value === "bigint") {
    const n = Number(value);
    return Number.isSafeInteger(n) ? n : value.toString();
  }
  if (typeof value === "number" || typeof value === "string" || typeof value === "boolean") {
    return value;
  }
  if (ArrayBuffer.isView(value) || Array.isArray(value)) {
    return Array.from(value, plainValue);
  }
  if (typeof value.x === "number" && typeof value.y === "number") {
    // Cesium Cartesian2/3/4 values from vector-typed metadata.
    const out = [value.x, value.y];
    if (typeof value.z === "number") out.push(value.z);
    if (typeof value.w === "number") out.push(value.w);
    return out;
  }
  if (value instanceof Cesium.Matrix2 || value instanceof Cesium.Matrix3 || value instanceof Cesium.Matrix4) {
    return Array.from(value);
  }
  return String(value);
}

export function featureProperties(feature) {
  const props = {};
  for (const key of feature.getPropertyIds()) {
    props[key] = plainValue(feature.getProperty(key));
  }
  return props;
}

// Display text for a value; `type` is the layer's schema type when known.
// FLOAT32 values are shown with float32 precision so that 12.3 does not show
// up as 12.300000190734863; every other number is shown in full.
export function formatValue(value, type) {
  if (value === null || value === undefined) return "";
  if (Array.isArray(value)) return value.map((v) => formatValue(v, type)).join(", ");
  if (typeof value === "number") {
    if (!Number.isFinite(value)) return String(value);
    if (type && type.toUpperCase() === "FLOAT32" && !Number.isInteger(value)) {
      return String(Number.parseFloat(value.toPrecision(7)));
    }
    return String(value);
  }
  return String(value);
}
