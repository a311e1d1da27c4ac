// @ts-check
// CityJSON styling, for every CityJSON layer at once: "plain" (the tiles' own material, lit) or
// "by semantic surface" (roofs, walls, grounds, windows, ... each in its legend colour; the
// legend's checkboxes hide a type, to see under the roofs, say). The
// tiles carry each vertex's CityJSON surface type as the EXT_structural_metadata property
// attribute `semantic_surface` (cim/layers/cityjson.py); a CustomShader reads it on the GPU.
//
// In surface mode the shader lights the surfaces itself, simply: a surface that faces up or down
// (roofs, grounds, floors: more than about 37° from vertical) shows exactly its legend colour, a
// wall is darkened by 10-28 % with its orientation (east and west faces lighter than north and
// south), so that a building's shape still reads without any colour leaving its swatch's hue.
// The colours are computed in sRGB, as the legend shows them, and handed to Cesium linear
// (colour.js), or they would draw lighter than their swatches.

/** @import { CityViewer } from "./city-viewer.js" */
/** @import { CityJSONLayerSpec } from "../types/city" */

import { SRGB_TO_LINEAR_GLSL, glslColour } from "./colour.js";
import { byId } from "./dom.js";
import { formatNumber, onLanguageChange, t } from "./i18n.js";

/** @type {Record<string, string>} CityJSON semantic surface type -> CSS (sRGB) colour */
export const SURFACE_COLOURS = {
  RoofSurface: "#c8553d",
  WallSurface: "#efe6d2",
  GroundSurface: "#6b5b4e",
  ClosureSurface: "#9fb4c7",
  OuterCeilingSurface: "#b39ddb",
  OuterFloorSurface: "#a1887f",
  Window: "#4fc3f7",
  Door: "#795548",
  InteriorWallSurface: "#ffe0b2",
  CeilingSurface: "#cfd8dc",
  FloorSurface: "#bcaaa4",
  WaterSurface: "#1e88e5",
  WaterGroundSurface: "#0d47a1",
  WaterClosureSurface: "#90caf9",
  TrafficArea: "#616161",
  AuxiliaryTrafficArea: "#9e9d24",
  TransportationMarking: "#fdd835",
  TransportationHole: "#37474f",
  None: "#b0b0b0",
};
const OTHER_SURFACE = "#ff80ab";
// hidden types travel as one float of bits (exact to 2^24); codes from 23 up share the last bit
const MASK_BITS = 24;

/** @typedef {"plain" | "surface"} SurfaceMode */

/**
 * @typedef {object} Model  one CityJSON layer, as this tool sees it
 * @property {CityJSONLayerSpec} spec
 * @property {Cesium.Cesium3DTileset} tileset
 * @property {Cesium.CustomShader} shader
 */

/** @param {string} name */
function colourOf(name) {
  return SURFACE_COLOURS[name] ?? OTHER_SURFACE;
}

/**
 * A layer's shader: its codes (from city.json) mapped to their colours.
 * @param {CityJSONLayerSpec} spec
 */
function surfaceShader(spec) {
  const property = spec.viewer_properties?.surface ?? "semantic_surface";
  const rows = Object.entries(spec.surfaces ?? {}).map(([name, s]) => `if (c == ${Number(s.code)}) return ${glslColour(colourOf(name))};`);
  return new Cesium.CustomShader({
    // the shader lights the surfaces itself (see the notes at the top)
    lightingModel: Cesium.LightingModel.UNLIT,
    uniforms: {
      u_hidden: { type: Cesium.UniformType.FLOAT, value: 0 },
      u_up: { type: Cesium.UniformType.VEC3, value: new Cesium.Cartesian3(0, 0, 1) },
      u_east: { type: Cesium.UniformType.VEC3, value: new Cesium.Cartesian3(1, 0, 0) },
    },
    fragmentShaderText: `
      ${SRGB_TO_LINEAR_GLSL}
      int maskBit(int c) {
        return c < ${MASK_BITS - 1} ? c : ${MASK_BITS - 1};
      }
      vec3 surfaceColour(int c) {
        ${rows.join("\n        ")}
        return ${glslColour(OTHER_SURFACE)};
      }
      void fragmentMain(FragmentInput fsInput, inout czm_modelMaterial material) {
        // the code reaches the fragment interpolated (a float a hair off its vertices' value)
        int code = int(floor(float(fsInput.metadata.${property}) + 0.5));
        if (mod(floor(u_hidden / pow(2.0, float(maskBit(code)))), 2.0) > 0.5) discard;
        vec3 n = normalize(fsInput.attributes.normalEC);
        float up = abs(dot(n, normalize(czm_viewRotation * u_up)));
        float east = abs(dot(n, normalize(czm_viewRotation * u_east)));
        float shade = mix(0.72 + 0.18 * east, 1.0, smoothstep(0.25, 0.6, up));
        material.diffuse = srgbToLinear(surfaceColour(code) * shade);
      }`,
  });
}

/** @param {CityViewer} viewer */
export function cityJsonTool(viewer) {
  const panel = byId("cityjson-panel", HTMLElement);
  const mode = byId("cityjson-mode", HTMLSelectElement);
  const legend = byId("cityjson-legend", HTMLElement);
  const lodNote = byId("cityjson-lod", HTMLElement);
  /** @type {Model[]} */
  const models = [];
  /** @type {Set<string>} surface types hidden */
  const hidden = new Set();

  /** the hidden types as the shader's bit mask (a layer's own codes) @param {CityJSONLayerSpec} spec */
  function maskOf(spec) {
    const bits = new Set();
    for (const [name, s] of Object.entries(spec.surfaces ?? {})) if (hidden.has(name)) bits.add(Math.min(Number(s.code), MASK_BITS - 1));
    let v = 0;
    for (const b of bits) v += 2 ** b;
    return v;
  }

  function apply() {
    const bySurface = mode.value === "surface";
    for (const { spec, tileset, shader } of models) {
      shader.setUniform("u_hidden", maskOf(spec));
      tileset.customShader = bySurface ? shader : undefined;
    }
    legend.hidden = !bySurface;
    viewer.unsettle();
  }

  // the surface types of every layer, with the surfaces shown of each
  function renderLegend() {
    /** @type {Map<string, number>} */
    const counts = new Map();
    for (const { spec } of models) {
      for (const [name, s] of Object.entries(spec.surfaces ?? {})) {
        if (s.count) counts.set(name, (counts.get(name) ?? 0) + s.count);
      }
    }
    legend.replaceChildren(
      ...[...counts].map(([name, count]) => {
        const row = document.createElement("label");
        row.className = "inline legend-row";
        row.dataset.surface = name;
        const box = document.createElement("input");
        box.type = "checkbox";
        box.checked = !hidden.has(name);
        box.addEventListener("change", () => setSurfaceVisible(name, box.checked));
        const swatch = document.createElement("span");
        swatch.className = "swatch";
        swatch.style.background = colourOf(name);
        row.append(box, swatch, document.createTextNode(`${name.replace(/Surface$/, "")} (${formatNumber(count, { useGrouping: false })})`));
        return row;
      }),
    );
    const notes = models.flatMap(({ spec }) => {
      const below = Object.entries(spec.lod_fallback ?? {}).map(([lod, n]) => t("cityjson.fallback", { n, lod }));
      return [t("cityjson.lod", { lod: spec.lod ?? "?" }) + (below.length ? ` (${below.join(t("list.separator"))})` : "")];
    });
    lodNote.textContent = notes.join("; ");
  }

  /**
   * Show or hide a surface type (in the surface mode).
   * @param {string} name  a CityJSON semantic surface type
   * @param {boolean} visible
   */
  function setSurfaceVisible(name, visible) {
    if (visible) hidden.delete(name);
    else hidden.add(name);
    const box = legend.querySelector(`[data-surface="${CSS.escape(name)}"] input`);
    if (box instanceof HTMLInputElement) box.checked = visible;
    apply();
  }

  /** @param {SurfaceMode} m */
  function setMode(m) {
    mode.value = m;
    apply();
  }

  /**
   * The legend colour (CSS) of a surface type.
   * @param {string} name
   */
  function legendColour(name) {
    return colourOf(name);
  }

  mode.addEventListener("input", apply);
  onLanguageChange(() => {
    if (models.length) renderLegend();
  });

  viewer.on("layeradded", ({ kind, spec, handle }) => {
    if (kind !== "cityjson" || !handle.tileset) return;
    const cityjsonSpec = /** @type {CityJSONLayerSpec} */ (spec);
    const shader = surfaceShader(cityjsonSpec);
    const o = viewer.city?.origin ?? { lon: 0, lat: 0, height: 0 };
    const origin = Cesium.Cartesian3.fromDegrees(o.lon, o.lat, o.height);
    const enu = Cesium.Transforms.eastNorthUpToFixedFrame(origin);
    shader.setUniform("u_east", Cesium.Matrix4.multiplyByPointAsVector(enu, new Cesium.Cartesian3(1, 0, 0), new Cesium.Cartesian3()));
    shader.setUniform("u_up", Cesium.Matrix4.multiplyByPointAsVector(enu, new Cesium.Cartesian3(0, 0, 1), new Cesium.Cartesian3()));
    models.push({ spec: cityjsonSpec, tileset: handle.tileset, shader });
    panel.hidden = false;
    renderLegend();
    apply();
  });

  viewer.on("reset", () => {
    if (!models.length) return;
    mode.value = mode.options[0]?.value ?? "plain";
    hidden.clear();
    renderLegend();
    apply();
  });

  return { setMode, setSurfaceVisible, legendColour };
}
