// Point-cloud styling: colour by RGB, classification (with a legend that filters classes),
// elevation or intensity; point size; eye-dome lighting. One CustomShader reads the points'
// EXT_structural_metadata property attributes (classification, intensity) on the GPU.

const Cesium = window.Cesium;

// ASPRS standard classes
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

const MODES = { rgb: 0, classification: 1, elevation: 2, intensity: 3 };

function classTable() {
  // 32 entries of rgb for the shader
  const rows = [];
  for (let i = 0; i < 32; i++) {
    const c = Cesium.Color.fromCssColorString((CLASS_COLOURS[i] ?? [null, "#cccccc"])[1]);
    rows.push(`if (c == ${i}) return vec3(${c.red.toFixed(4)}, ${c.green.toFixed(4)}, ${c.blue.toFixed(4)});`);
  }
  return `vec3 classColour(int c) {\n${rows.join("\n")}\nreturn vec3(0.8);\n}`;
}

export function setupPointCloud({ layer, tileset, origin, $, onChange }) {
  $("points-panel").hidden = false;
  const mode = $("points-mode");
  const size = $("points-size");
  const edl = $("points-edl");
  const legend = $("points-legend");
  const hasClass = Boolean(layer.schema?.classification);
  const hasIntensity = Boolean(layer.schema?.intensity);
  for (const opt of mode.options) {
    if (opt.value === "classification") opt.disabled = !hasClass;
    if (opt.value === "intensity") opt.disabled = !hasIntensity;
    if (opt.value === "rgb") opt.disabled = layer.has_color === false;
  }
  if (layer.has_color === false) mode.value = hasClass ? "classification" : "elevation";

  const o = origin ?? { lon: 0, lat: 0, height: 0 };
  const originWC = Cesium.Cartesian3.fromDegrees(o.lon, o.lat, o.height);
  const up = Cesium.Ellipsoid.WGS84.geodeticSurfaceNormal(originWC, new Cesium.Cartesian3());
  const b = layer.bounds ?? {};
  const hidden = new Set();

  const shader = new Cesium.CustomShader({
    uniforms: {
      u_mode: { type: Cesium.UniformType.INT, value: MODES[mode.value] },
      u_hidden: { type: Cesium.UniformType.FLOAT, value: 0 },
      u_size: { type: Cesium.UniformType.FLOAT, value: Number(size.value) },
      u_origin: { type: Cesium.UniformType.VEC3, value: originWC },
      u_up: { type: Cesium.UniformType.VEC3, value: up },
      u_hmin: { type: Cesium.UniformType.FLOAT, value: (b.min_height ?? 0) - o.height },
      u_hmax: { type: Cesium.UniformType.FLOAT, value: (b.max_height ?? 100) - o.height },
    },
    vertexShaderText: `
      void vertexMain(VertexInput vsInput, inout czm_modelVertexOutput vsOutput) {
        vsOutput.pointSize = u_size;
      }`,
    fragmentShaderText: `
      ${classTable()}
      vec3 ramp(float t) {
        t = clamp(t, 0.0, 1.0);
        return mix(mix(vec3(0.1, 0.3, 0.9), vec3(0.2, 0.8, 0.3), smoothstep(0.0, 0.5, t)),
                   mix(vec3(0.95, 0.85, 0.2), vec3(0.85, 0.2, 0.1), smoothstep(0.5, 1.0, t)), step(0.5, t));
      }
      void fragmentMain(FragmentInput fsInput, inout czm_modelMaterial material) {
        ${hasClass ? "int cls = int(fsInput.metadata.classification);" : "int cls = 1;"}
        if (mod(floor(u_hidden / pow(2.0, float(cls))), 2.0) > 0.5) discard;
        if (u_mode == 1) {
          material.diffuse = classColour(cls);
        } else if (u_mode == 2) {
          float h = dot(fsInput.attributes.positionWC - u_origin, u_up);
          material.diffuse = ramp((h - u_hmin) / max(u_hmax - u_hmin, 1e-3));
        } else if (u_mode == 3) {
          ${hasIntensity ? "float i = float(fsInput.metadata.intensity) / 65535.0;" : "float i = 0.5;"}
          material.diffuse = vec3(sqrt(clamp(i, 0.0, 1.0)));
        }
      }`,
  });
  tileset.customShader = shader;
  tileset.pointCloudShading = new Cesium.PointCloudShading({ attenuation: false, eyeDomeLighting: edl.checked });

  function maskValue() {
    let v = 0;
    for (const c of hidden) if (c < 24) v += 2 ** c;
    return v;
  }

  function apply() {
    shader.setUniform("u_mode", MODES[mode.value]);
    shader.setUniform("u_size", Number(size.value));
    shader.setUniform("u_hidden", maskValue());
    tileset.pointCloudShading.eyeDomeLighting = edl.checked;
    legend.hidden = mode.value !== "classification";
    onChange?.();
  }

  const present = Object.keys(layer.classes ?? CLASS_COLOURS).map(Number);
  legend.replaceChildren(
    ...present.map((c) => {
      const [name, colour] = CLASS_COLOURS[c] ?? [layer.classes?.[c]?.name ?? `class ${c}`, "#cccccc"];
      const label = document.createElement("label");
      label.className = "inline legend-row";
      const box = document.createElement("input");
      box.type = "checkbox";
      box.checked = true;
      box.dataset.class = String(c);
      box.addEventListener("change", () => {
        if (box.checked) hidden.delete(c);
        else hidden.add(c);
        apply();
      });
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = colour;
      const count = layer.classes?.[c]?.count;
      label.append(box, swatch, document.createTextNode(`${c} ${name}${count ? ` (${count.toLocaleString()})` : ""}`));
      return label;
    }),
  );
  for (const el of [mode, size, edl]) el.addEventListener("input", apply);
  apply();

  return {
    setMode(m) {
      mode.value = m;
      apply();
    },
    setClassVisible(c, visible) {
      if (visible) hidden.delete(c);
      else hidden.add(c);
      const box = legend.querySelector(`input[data-class="${c}"]`);
      if (box) box.checked = visible;
      apply();
    },
    setSize(px) {
      size.value = String(px);
      apply();
    },
  };
}
