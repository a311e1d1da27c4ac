// @ts-check
// Multi-screen comparison (多屏比对): two to four CityViewers side by side whose cameras move
// together, each with its own visible layers. The cameras are linked by value: after a view has
// drawn a frame, its camera (position, direction and up, in world coordinates) is compared with
// the last camera shared; if it moved, it becomes the shared camera and the others are set to it.
// A view set that way draws the very camera that is shared, so it shares nothing back: no
// feedback loop, and no "leader" to elect (a drag, a wheel, a fly-to or a script in any view
// moves all of them).

/** @import { CityViewer, Layer } from "./city-viewer.js" */

import { onLanguageChange, t } from "./i18n.js";

/** a camera as nine numbers: position (metres, ECEF), direction and up (unit vectors) */
/** @typedef {number[]} CameraState */

/** a camera that moved less than this (metres; radians for the unit vectors) has not moved */
const POSITION_TOLERANCE_M = 1e-4;
const DIRECTION_TOLERANCE = 1e-9;

/** @param {Cesium.Camera} camera @returns {CameraState} */
export function cameraState(camera) {
  const p = camera.positionWC;
  const d = camera.directionWC;
  const u = camera.upWC;
  return [p.x, p.y, p.z, d.x, d.y, d.z, u.x, u.y, u.z];
}

/** @param {CameraState} a @param {CameraState} b */
function sameCamera(a, b) {
  for (let i = 0; i < 9; i++) {
    if (Math.abs(a[i] - b[i]) > (i < 3 ? POSITION_TOLERANCE_M : DIRECTION_TOLERANCE)) return false;
  }
  return true;
}

/**
 * Put `camera` where `state` says, in world coordinates (any reference frame it had is dropped).
 * @param {Cesium.Camera} camera
 * @param {CameraState} state
 */
function setCamera(camera, state) {
  if (!Cesium.Matrix4.equals(camera.transform, Cesium.Matrix4.IDENTITY)) camera.lookAtTransform(Cesium.Matrix4.IDENTITY);
  camera.position = new Cesium.Cartesian3(state[0], state[1], state[2]);
  camera.direction = new Cesium.Cartesian3(state[3], state[4], state[5]);
  camera.up = new Cesium.Cartesian3(state[6], state[7], state[8]);
  camera.right = Cesium.Cartesian3.normalize(Cesium.Cartesian3.cross(camera.direction, camera.up, new Cesium.Cartesian3()), new Cesium.Cartesian3());
}

/**
 * Link the cameras of `views`: moving any one moves the others.
 * @param {CityViewer[]} views
 * @returns {{ pushes: () => number, shared: () => CameraState | null, unlink: () => void }}
 */
export function linkCameras(views) {
  /** @type {CameraState | null} */
  let shared = null;
  /** how many times a view's move was copied to the others (tests check it stays put) */
  let pushes = 0;
  const stops = views.map((view) =>
    view.cesium.scene.postRender.addEventListener(() => {
      const state = cameraState(view.cesium.camera);
      if (shared && sameCamera(state, shared)) return;
      shared = state;
      pushes += 1;
      for (const other of views) {
        if (other === view) continue;
        setCamera(other.cesium.camera, state);
        other.unsettle();
      }
    }),
  );
  return {
    pushes: () => pushes,
    shared: () => (shared ? [...shared] : null),
    unlink: () => stops.forEach((stop) => stop()),
  };
}

/**
 * A view's own layer picker: a checkbox per layer, in a corner of the view.
 * @param {CityViewer} view
 * @param {number} n  the view's number, from 1
 * @param {HTMLElement} parent
 */
export function layerPicker(view, n, parent) {
  const box = document.createElement("details");
  box.className = "view-layers";
  box.open = true;
  const summary = document.createElement("summary");
  const list = document.createElement("ul");
  box.append(summary, list);
  parent.append(box);
  const label = () => {
    summary.textContent = t("compare.view", { n });
    box.setAttribute("aria-label", t("compare.viewLayers", { n }));
  };
  label();
  onLanguageChange(label);

  view.on("layeradded", (/** @type {Layer} */ layer) => {
    const li = document.createElement("li");
    const labelEl = document.createElement("label");
    const check = document.createElement("input");
    check.type = "checkbox";
    check.dataset.layer = layer.id;
    check.checked = layer.handle.show;
    check.addEventListener("change", () => view.setLayerVisible(layer.id, check.checked));
    const title = document.createElement("span");
    title.textContent = layer.spec.title ?? layer.id;
    labelEl.append(check, " ", title);
    li.append(labelEl);
    list.append(li);
  });
  view.on("layervisibility", ({ id, show }) => {
    const check = list.querySelector(`input[data-layer="${CSS.escape(id)}"]`);
    if (check instanceof HTMLInputElement) check.checked = show;
  });
}
