// @ts-check
// Point-cloud styling, for every point-cloud layer at once: colour by RGB, classification (with a
// legend of the classes of all layers that filters them), elevation (one ramp over all layers'
// heights) or intensity; point size; eye-dome lighting. Each layer gets a CustomShader that
// reads its points' EXT_structural_metadata property attributes (classification, intensity) on
// the GPU; the panel sets the same uniforms on all of them. The shader computes its colours as
// the legend shows them (sRGB) and hands Cesium their linear values (colour.js); RGB mode leaves
// COLOR_0 alone, linear as glTF defines it.

/** @import { CityViewer } from "./city-viewer.js" */
/** @import { PointCloudLayerSpec } from "../types/city" */

import { SRGB_TO_LINEAR_GLSL, glslColour } from "./colour.js";
import { byId } from "./dom.js";
import { formatNumber, hasMessage, onLanguageChange, t } from "./i18n.js";

/** @type {Record<number, [name: string, colour: string]>} ASPRS standard classes (names in English; the
 * catalogue's `points.class.N` names them in the language shown); CSS (sRGB) colours */
export const CLASS_COLOURS = {
  1: ["unclassified", "#9e9e9e"],
  2: ["ground", "#a1887f"],
  3: ["low vegetation", "#aed581"],
  4: ["medium vegetation", "#7cb342"],
  5: ["high vegetation", "#33691e"],
  6: ["building", "#ef6c00"],
  7: ["low point (noise)", "#e91e63"],
  9: ["water", "#1e88e5"],
  17: ["bridge deck", "#8e24aa"],
};

/** @typedef {"rgb" | "classification" | "elevation" | "intensity"} ColourMode */

/** @type {Record<ColourMode, number>} */
const MODES = { rgb: 0, classification: 1, elevation: 2, intensity: 3 };

/**
 * @typedef {object} Cloud  one point-cloud layer, as this tool sees it
 * @property {PointCloudLayerSpec} spec
 * @property {Cesium.Cesium3DTileset} tileset
 * @property {Cesium.CustomShader} shader
 */

const OTHER_CLASS = "#cccccc";

function classTable() {
  // 32 entries of sRGB for the shader
  const rows = [];
  for (let i = 0; i < 32; i++) rows.push(`if (c == ${i}) return ${glslColour((CLASS_COLOURS[i] ?? [null, OTHER_CLASS])[1])};`);
  return `vec3 classColour(int c) {\n${rows.join("\n")}\nreturn ${glslColour(OTHER_CLASS)};\n}`;
}

/**
 * A layer's shader: only the metadata its schema has may be read (else it does not compile).
 * @param {PointCloudLayerSpec} spec
 */
function cloudShader(spec) {
  const hasClass = Boolean(spec.schema?.classification);
  const hasIntensity = Boolean(spec.schema?.intensity);
  return new Cesium.CustomShader({
    // the colours are final: no lighting or tone mapping, should a layer ever carry normals
    lightingModel: Cesium.LightingModel.UNLIT,
    uniforms: {
      u_mode: { type: Cesium.UniformType.INT, value: 0 },
      u_hidden: { type: Cesium.UniformType.FLOAT, value: 0 },
      u_size: { type: Cesium.UniformType.FLOAT, value: 2 },
      u_origin: { type: Cesium.UniformType.VEC3, value: new Cesium.Cartesian3() },
      u_up: { type: Cesium.UniformType.VEC3, value: new Cesium.Cartesian3(0, 0, 1) },
      u_hmin: { type: Cesium.UniformType.FLOAT, value: 0 },
      u_hmax: { type: Cesium.UniformType.FLOAT, value: 100 },
    },
    vertexShaderText: `
      void vertexMain(VertexInput vsInput, inout czm_modelVertexOutput vsOutput) {
        vsOutput.pointSize = u_size;
      }`,
    fragmentShaderText: `
      ${SRGB_TO_LINEAR_GLSL}
      ${classTable()}
      // sRGB stops, blended in sRGB as a CSS gradient would be
      vec3 ramp(float t) {
        t = clamp(t, 0.0, 1.0);
        return mix(mix(vec3(0.1, 0.3, 0.9), vec3(0.2, 0.8, 0.3), smoothstep(0.0, 0.5, t)),
                   mix(vec3(0.95, 0.85, 0.2), vec3(0.85, 0.2, 0.1), smoothstep(0.5, 1.0, t)), step(0.5, t));
      }
      void fragmentMain(FragmentInput fsInput, inout czm_modelMaterial material) {
        ${hasClass ? "int cls = int(fsInput.metadata.classification);" : "int cls = 1;"}
        if (mod(floor(u_hidden / pow(2.0, float(cls))), 2.0) > 0.5) discard;
        if (u_mode == 0) return; // RGB: COLOR_0 as the material stage read it (linear)
        vec3 srgb;
        if (u_mode == 1) {
          srgb = classColour(cls);
        } else if (u_mode == 2) {
          float h = dot(fsInput.attributes.positionWC - u_origin, u_up);
          srgb = ramp((h - u_hmin) / max(u_hmax - u_hmin, 1e-3));
        } else {
          ${hasIntensity ? "float i = float(fsInput.metadata.intensity) / 65535.0;" : "float i = 0.5;"}
          srgb = vec3(sqrt(clamp(i, 0.0, 1.0)));
        }
        material.diffuse = srgbToLinear(srgb);
      }`,
  });
}

/** @param {CityViewer} viewer */
export function pointCloudTool(viewer) {
  const panel = byId("points-panel", HTMLElement);
  const mode = byId("points-mode", HTMLSelectElement);
  const size = byId("points-size", HTMLInputElement);
  const edl = byId("points-edl", HTMLInputElement);
  const legend = byId("points-legend", HTMLElement);
  /** @type {Cloud[]} */
  const clouds = [];
  /** @type {Set<number>} ASPRS codes hidden */
  const hidden = new Set();
  // elevation is measured along the up direction at the city origin
  let originWC = new Cesium.Cartesian3();
  let up = new Cesium.Cartesian3(0, 0, 1);

  /** @param {ColourMode} m */
  const option = (m) => [...mode.options].find((o) => o.value === m);

  /** @returns {ColourMode} */
  function defaultMode() {
    if (!option("rgb")?.disabled) return "rgb";
    return option("classification")?.disabled ? "elevation" : "classification";
  }

  // a mode is offered when at least one layer has what it colours by
  function updateModes() {
    const some = (/** @type {(spec: PointCloudLayerSpec) => boolean} */ test) => clouds.some((c) => test(c.spec));
    const rgb = option("rgb");
    const classification = option("classification");
    const intensity = option("intensity");
    if (rgb) rgb.disabled = !some((s) => s.has_color !== false);
    if (classification) classification.disabled = !some((s) => Boolean(s.schema?.classification));
    if (intensity) intensity.disabled = !some((s) => Boolean(s.schema?.intensity));
    if (mode.selectedOptions[0]?.disabled) mode.value = defaultMode();
  }

  function maskValue() {
    let v = 0;
    for (const c of hidden) if (c < 24) v += 2 ** c;
    return v;
  }

  function apply() {
    const heights = clouds.map((c) => c.spec.bounds);
    const originHeight = viewer.city?.origin?.height ?? 0;
    const hmin = Math.min(...heights.map((b) => b?.min_height ?? 0)) - originHeight;
    const hmax = Math.max(...heights.map((b) => b?.max_height ?? 100)) - originHeight;
    for (const { tileset, shader } of clouds) {
      shader.setUniform("u_mode", MODES[/** @type {ColourMode} */ (mode.value)]);
      shader.setUniform("u_size", Number(size.value));
      shader.setUniform("u_hidden", maskValue());
      shader.setUniform("u_origin", originWC);
      shader.setUniform("u_up", up);
      shader.setUniform("u_hmin", hmin);
      shader.setUniform("u_hmax", hmax);
      tileset.pointCloudShading.eyeDomeLighting = edl.checked;
    }
    legend.hidden = mode.value !== "classification";
    viewer.unsettle();
  }

  // the classes every layer reports (with their point counts), else the standard ones
  function renderLegend() {
    /** @type {Map<number, { name: string, count: number }>} */
    const present = new Map();
    for (const { spec } of clouds) {
      for (const [code, info] of Object.entries(spec.classes ?? {})) {
        const c = Number(code);
        const seen = present.get(c);
        const name = hasMessage(`points.class.${c}`) ? t(`points.class.${c}`) : (info.name ?? t("points.classN", { code: c }));
        present.set(c, { name, count: (seen?.count ?? 0) + (info.count ?? 0) });
      }
    }
    if (!present.size) {
      for (const code of Object.keys(CLASS_COLOURS)) present.set(Number(code), { name: t(`points.class.${code}`), count: 0 });
    }
    legend.replaceChildren(
      ...[...present].sort(([a], [b]) => a - b).map(([c, { name, count }]) => {
        const label = document.createElement("label");
        label.className = "inline legend-row";
        const box = document.createElement("input");
        box.type = "checkbox";
        box.checked = !hidden.has(c);
        box.dataset.class = String(c);
        box.addEventListener("change", () => setClassVisible(c, box.checked));
        const swatch = document.createElement("span");
        swatch.className = "swatch";
        swatch.style.background = CLASS_COLOURS[c]?.[1] ?? OTHER_CLASS;
        label.append(box, swatch, document.createTextNode(`${c} ${name}${count ? ` (${formatNumber(count)})` : ""}`));
        return label;
      }),
    );
  }

  /** @param {ColourMode} m */
  function setMode(m) {
    mode.value = m;
    apply();
  }

  /**
   * @param {number} c  an ASPRS class code
   * @param {boolean} visible
   */
  function setClassVisible(c, visible) {
    if (visible) hidden.delete(c);
    else hidden.add(c);
    const box = legend.querySelector(`input[data-class="${c}"]`);
    if (box instanceof HTMLInputElement) box.checked = visible;
    apply();
  }

  /** @param {number} px */
  function setSize(px) {
    size.value = String(px);
    apply();
  }

  for (const el of [mode, size, edl]) el.addEventListener("input", apply);

  viewer.on("layeradded", ({ kind, spec, handle }) => {
    if (kind !== "pointcloud" || !handle.tileset) return;
    const o = viewer.city?.origin ?? { lon: 0, lat: 0, height: 0 };
    originWC = Cesium.Cartesian3.fromDegrees(o.lon, o.lat, o.height);
    up = Cesium.Ellipsoid.WGS84.geodeticSurfaceNormal(originWC, new Cesium.Cartesian3());
    const cloudSpec = /** @type {PointCloudLayerSpec} */ (spec);
    const cloud = { spec: cloudSpec, tileset: handle.tileset, shader: cloudShader(cloudSpec) };
    cloud.tileset.customShader = cloud.shader;
    cloud.tileset.pointCloudShading = new Cesium.PointCloudShading({ attenuation: false, eyeDomeLighting: edl.checked });
    clouds.push(cloud);
    showPanel();
    updateModes();
    renderLegend();
    apply();
  });

  // the panel and its legend only while a point-cloud layer is shown
  function showPanel() {
    panel.hidden = !clouds.some((c) => c.tileset.show);
  }
  viewer.on("layervisibility", showPanel);
  onLanguageChange(() => {
    if (clouds.length) renderLegend();
  });

  viewer.on("reset", () => {
    showPanel();
    if (!clouds.length) return;
    hidden.clear();
    mode.value = defaultMode();
    size.value = size.defaultValue;
    edl.checked = edl.defaultChecked;
    renderLegend();
    apply();
  });

  return { setMode, setClassVisible, setSize };
}
