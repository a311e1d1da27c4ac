// A second 3D Tiles client for the browser tests: 3DTilesRendererJS on three.js, driven from
// Python through `window.client` (tests/browser/test_second_client.py).
//
// The scene's frame is a local one the test chooses (a tileset's root transform: east, north,
// up in metres): the tilesets' groups hang under a node holding its inverse, so the camera and
// the picks work in metres around the city, not in ECEF.
//
// Colour management is three.js's default, stated here: glTF's COLOR_0 is linear, three.js
// treats vertex colours as linear (its working space) and converts to sRGB on output to the
// canvas. Nothing in this page converts colours itself.

import * as THREE from "three";
import { TilesRenderer } from "3d-tiles-renderer";
import { GLTFExtensionsPlugin } from "3d-tiles-renderer/plugins";
import { MeshoptDecoder } from "three/addons/libs/meshopt_decoder.module.js";

THREE.ColorManagement.enabled = true;

const canvas = /** @type {HTMLCanvasElement} */ (document.getElementById("view"));
const renderer = new THREE.WebGLRenderer({ canvas, antialias: false, alpha: true });
renderer.outputColorSpace = THREE.SRGBColorSpace;
renderer.setPixelRatio(1);
renderer.setClearColor(0x000000, 0); // transparent: the test tells covered pixels by alpha

const scene = new THREE.Scene();
const frame = new THREE.Group(); // ECEF -> the chosen local frame
frame.matrixAutoUpdate = false;
scene.add(frame);
const camera = new THREE.OrthographicCamera(-1, 1, 1, -1, 0.1, 10);

/** @type {Map<string, {tiles: TilesRenderer, models: number, rootLoaded: boolean}>} */
const layers = new Map();
const errors = [];
let pointSize = 1;
let frames = 0;

window.addEventListener("error", (e) => errors.push(`error: ${e.message}`));
window.addEventListener("unhandledrejection", (e) => errors.push(`unhandled rejection: ${e.reason}`));

/** A seeded shuffle of 0..n-1 (xorshift32: the same picture on every run). */
function shuffled(n) {
  const order = new Uint32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  let s = 0x9e3779b9;
  for (let i = n - 1; i > 0; i--) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    const j = (s >>> 0) % (i + 1);
    const t = order[i];
    order[i] = order[j];
    order[j] = t;
  }
  return order;
}

function stylePoints(object) {
  object.traverse((o) => {
    if (o.isPoints) {
      // Splats of `pointSize` pixels overlap; which one shows must not depend on the point.
      // With depth, roofs and crowns would cover the ground around them by a splat's radius;
      // without it the last drawn wins, and tiles store points in 3D Morton order, where the
      // higher come later. A shuffled draw order makes every covering point equally likely.
      o.material.size = pointSize;
      o.material.sizeAttenuation = false;
      o.material.depthTest = false;
      o.material.depthWrite = false;
      if (!o.geometry.index) o.geometry.setIndex(new THREE.BufferAttribute(shuffled(o.geometry.attributes.position.count), 1));
    }
  });
}

function loop() {
  camera.updateMatrixWorld();
  for (const layer of layers.values()) layer.tiles.update();
  renderer.render(scene, camera);
  frames++;
  requestAnimationFrame(loop);
}

function setView({ centre, size, pixels, top, depth }) {
  const [w, h] = pixels;
  renderer.setSize(w, h, true);
  camera.left = -size[0] / 2;
  camera.right = size[0] / 2;
  camera.top = size[1] / 2;
  camera.bottom = -size[1] / 2;
  camera.near = 1;
  camera.far = depth + 1;
  camera.position.set(centre[0], centre[1], top + 1);
  camera.up.set(0, 1, 0); // north up
  camera.lookAt(centre[0], centre[1], top);
  camera.updateProjectionMatrix();
  camera.updateMatrixWorld();
  for (const layer of layers.values()) layer.tiles.setResolutionFromRenderer(camera, renderer);
}

function addTileset(name, url, errorTarget) {
  const tiles = new TilesRenderer(url);
  tiles.registerPlugin(new GLTFExtensionsPlugin({ metadata: true, meshoptDecoder: MeshoptDecoder }));
  tiles.errorTarget = errorTarget;
  const layer = { tiles, models: 0, rootLoaded: false };
  tiles.addEventListener("load-root-tileset", () => {
    layer.rootLoaded = true;
  });
  tiles.addEventListener("load-model", ({ scene: model }) => {
    layer.models++;
    stylePoints(model);
  });
  tiles.addEventListener("load-error", ({ url: failed, error }) => errors.push(`${name}: ${failed}: ${error}`));
  tiles.setCamera(camera);
  tiles.setResolutionFromRenderer(camera, renderer);
  frame.add(tiles.group);
  layers.set(name, layer);
}

function base64(bytes) {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

function plain(value) {
  if (typeof value === "bigint") return Number(value);
  if (Array.isArray(value) || ArrayBuffer.isView(value)) return Array.from(value, plain);
  return value;
}

function tableRow(metadata, table, id) {
  const row = metadata.getPropertyTableData(table, id);
  return Object.fromEntries(Object.entries(row).map(([k, v]) => [k, plain(v)]));
}

window.client = {
  errors,
  get frames() {
    return frames;
  },

  /**
   * Open tilesets in a frame, seen straight down through an orthographic camera.
   * @param {{frame: number[], view: {centre: number[], size: number[], pixels: number[],
   *   top: number, depth: number}, tilesets: Object<string, string>, pointSize?: number,
   *   errorTarget?: number}} options  frame: the local frame's 4x4 column-major matrix (to
   *   ECEF); view: centre (x, y) and size (width, height) in metres, pixels [w, h], the top
   *   of the scene (z) and its depth below; errorTarget: 0 refines to the leaves
   */
  open({ frame: matrix, view, tilesets, pointSize: size = 1, errorTarget = 0 }) {
    frame.matrix.fromArray(matrix).invert();
    frame.matrixWorldNeedsUpdate = true;
    pointSize = size;
    for (const [name, url] of Object.entries(tilesets)) addTileset(name, url, errorTarget);
    setView(view);
    requestAnimationFrame(loop);
  },

  /** Every tileset's root loaded and nothing left to load (tiles-load-end can fire early). */
  loaded() {
    if (layers.size === 0) return false;
    for (const { tiles, rootLoaded } of layers.values()) {
      if (!rootLoaded || tiles.isLoading || tiles.loadProgress !== 1) return false;
    }
    return true;
  },

  /** What a tileset has drawn: models loaded, visible meshes and points, points and triangles. */
  stats(name) {
    const layer = layers.get(name);
    const out = { models: layer.models, meshes: 0, clouds: 0, points: 0, triangles: 0 };
    layer.tiles.group.traverse((o) => {
      if (!o.visible) return;
      const count = o.geometry ? (o.geometry.index ?? o.geometry.attributes.position)?.count ?? 0 : 0;
      if (o.isPoints) {
        out.clouds++;
        out.points += count;
      } else if (o.isMesh) {
        out.meshes++;
        out.triangles += count / 3;
      }
    });
    return out;
  },

  /** Show or hide a tileset. */
  show(name, visible) {
    layers.get(name).tiles.group.visible = visible;
  },

  /** Render now and read the canvas back: RGBA rows top to bottom, base64. */
  capture() {
    renderer.render(scene, camera);
    const gl = renderer.getContext();
    const w = gl.drawingBufferWidth;
    const h = gl.drawingBufferHeight;
    const raw = new Uint8Array(w * h * 4);
    gl.readPixels(0, 0, w, h, gl.RGBA, gl.UNSIGNED_BYTE, raw);
    const rows = new Uint8Array(raw.length);
    for (let y = 0; y < h; y++) rows.set(raw.subarray((h - 1 - y) * w * 4, (h - y) * w * 4), y * w * 4);
    return { width: w, height: h, rgba: base64(rows) };
  },

  /**
   * Every feature of a tileset through the plugins' API: for each mesh with EXT_mesh_features,
   * the ids its feature-id attribute holds, and their EXT_structural_metadata table rows.
   */
  features(name) {
    const out = [];
    layers.get(name).tiles.group.traverse((o) => {
      const { meshFeatures, structuralMetadata } = o.userData;
      if (!meshFeatures || !structuralMetadata) return;
      for (const info of meshFeatures.getFeatureInfo()) {
        if (!("attribute" in info) || info.propertyTable === undefined) continue;
        const ids = new Set(o.geometry.getAttribute(`_feature_id_${info.attribute}`).array);
        if ("nullFeatureId" in info) ids.delete(info.nullFeatureId);
        const { className } = structuralMetadata.getPropertyTableInfo(info.propertyTable);
        for (const id of [...ids].sort((a, b) => a - b)) {
          out.push({ className, feature: id, properties: tableRow(structuralMetadata, info.propertyTable, id) });
        }
      }
    });
    return out;
  },

  /**
   * Cast a ray straight down at (x, y) of the frame; the feature hit, through
   * MeshFeatures.getFeatures and StructuralMetadata.getPropertyTableData, or null.
   */
  pick(name, x, y) {
    const top = camera.position.z;
    const raycaster = new THREE.Raycaster(new THREE.Vector3(x, y, top), new THREE.Vector3(0, 0, -1), 0, camera.far);
    frame.updateMatrixWorld(true);
    const hit = raycaster.intersectObject(layers.get(name).tiles.group, true)[0];
    if (!hit) return null;
    const { meshFeatures, structuralMetadata } = hit.object.userData;
    if (!meshFeatures || !structuralMetadata) return { height: hit.point.z, feature: null, properties: null };
    const ids = meshFeatures.getFeatures(hit.faceIndex, hit.barycoord);
    const info = meshFeatures.getFeatureInfo();
    const i = ids.findIndex((id, k) => id !== null && info[k].propertyTable !== undefined);
    if (i < 0) return { height: hit.point.z, feature: null, properties: null };
    return {
      height: hit.point.z,
      feature: ids[i],
      properties: tableRow(structuralMetadata, info[i].propertyTable, ids[i]),
    };
  },
};
