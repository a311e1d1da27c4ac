// @ts-check
// Colours that the viewer's shaders compute. Cesium takes what a shader writes to
// `material.diffuse` as linear light and encodes it for the screen (`czm_linearToSrgb`, a plain
// 2.2 power, in its unlit and PBR stages), as it does glTF's COLOR_0 and base colours; legend
// and CSS colours are sRGB. A shader therefore computes a colour as the legend shows it and
// hands Cesium its linear value (SRGB_TO_LINEAR_GLSL), or it draws lighter than its swatch.
// Left alone, because Cesium takes them as sRGB itself (it applies them after that encoding, or
// gamma-corrects them when HDR is on): Cesium3DTileFeature.color (the selection highlight),
// Cesium3DTileStyle colours, imagery, globe, background, clipping-edge and entity colours.

/**
 * GLSL `vec3 srgbToLinear(vec3 srgb)`: the linear colour that Cesium's output encoding turns
 * back into `srgb`. Cesium's own `czm_srgbToLinear` is that inverse (the same 2.2 power, not the
 * piecewise sRGB curve), so the swatch matches to the byte.
 */
export const SRGB_TO_LINEAR_GLSL = `
vec3 srgbToLinear(vec3 srgb) {
  return czm_srgbToLinear(clamp(srgb, 0.0, 1.0));
}`;

/**
 * A CSS colour as a GLSL `vec3` literal of its sRGB components (alpha dropped).
 * @param {string} css
 */
export function glslColour(css) {
  const c = Cesium.Color.fromCssColorString(css);
  return `vec3(${c.red.toFixed(4)}, ${c.green.toFixed(4)}, ${c.blue.toFixed(4)})`;
}
