// @ts-check
// Reading and formatting the properties of a picked 3D Tiles feature.

/** @typedef {null | boolean | number | string | PlainValue[]} PlainValue */

import { formatNumber, language, t } from "./i18n.js";

/**
 * @param {unknown} picked  what scene.pick returned
 * @returns {picked is Cesium.Cesium3DTileFeature}
 */
export function isTileFeature(picked) {
  return picked instanceof Cesium.Cesium3DTileFeature;
}

/**
 * Value as something JSON can carry (for window.cim.pickAt and data-value).
 * @param {unknown} value
 * @returns {PlainValue}
 */
export function plainValue(value) {
  if (value === undefined || value === null) return null;
  if (typeof value === "bigint") {
    const n = Number(value);
    return Number.isSafeInteger(n) ? n : value.toString();
  }
  if (typeof value === "number" || typeof value === "string" || typeof value === "boolean") {
    return value;
  }
  if (Array.isArray(value)) return value.map(plainValue);
  if (ArrayBuffer.isView(value)) {
    // a typed array (array metadata); getProperty never gives a DataView
    return Array.from(/** @type {ArrayLike<unknown>} */ (/** @type {unknown} */ (value)), plainValue);
  }
  if (value instanceof Cesium.Matrix2 || value instanceof Cesium.Matrix3 || value instanceof Cesium.Matrix4) {
    return Array.from(value);
  }
  const v = /** @type {{ x?: unknown, y?: unknown, z?: unknown, w?: unknown }} */ (value);
  if (typeof v.x === "number" && typeof v.y === "number") {
    // Cesium Cartesian2/3/4 values from vector-typed metadata.
    const out = [v.x, v.y];
    if (typeof v.z === "number") out.push(v.z);
    if (typeof v.w === "number") out.push(v.w);
    return out;
  }
  return String(value);
}

/**
 * @param {Cesium.Cesium3DTileFeature} feature
 * @returns {Record<string, PlainValue>}
 */
export function featureProperties(feature) {
  /** @type {Record<string, PlainValue>} */
  const props = {};
  for (const key of feature.getPropertyIds()) {
    props[key] = plainValue(feature.getProperty(key));
  }
  return props;
}

/**
 * Display text for a value; `type` is the layer's schema type when known. Numbers are shown
 * for the language without grouping (ids and years stay whole), with the precision their type
 * holds: FLOAT32 to 7 significant digits (12.3, not 12.300000190734863), other floats to 12
 * (14.1, not 14.100000000000001). Booleans read yes/no in the language (also a BOOLEAN column's
 * enum names, as the tiles store booleans with absent values: cim.formats.glb.BOOLEAN_ENUM).
 * @param {unknown} value
 * @param {string} [type]
 * @returns {string}
 */
export function formatValue(value, type) {
  if (value === null || value === undefined) return "";
  if (Array.isArray(value)) return value.map((v) => formatValue(v, type)).join(", ");
  if (typeof value === "boolean") return t(value ? "value.true" : "value.false");
  // a boolean some features lack is an enum in the tiles ("true", "false"; no value where absent)
  if (type === "BOOLEAN" && (value === "true" || value === "false")) return t(value === "true" ? "value.true" : "value.false");
  if (typeof value === "number") {
    if (!Number.isFinite(value)) return String(value);
    if (Number.isInteger(value)) return String(value);
    const digits = type && type.toUpperCase() === "FLOAT32" ? 7 : 12;
    const rounded = Number.parseFloat(value.toPrecision(digits));
    return formatNumber(rounded, { useGrouping: false, maximumFractionDigits: 12 });
  }
  return String(value);
}

/**
 * A feature's attribute in the language shown: in English, its `NAME_en` field when it has one
 * (the sample city's names and addresses are Chinese, with English beside them).
 * @param {Record<string, PlainValue> | undefined} properties
 * @param {string} name
 * @returns {PlainValue | undefined}
 */
export function localized(properties, name) {
  if (!properties) return undefined;
  const english = properties[`${name}_en`];
  if (language() === "en" && english !== undefined && english !== null && english !== "") return english;
  return properties[name];
}
