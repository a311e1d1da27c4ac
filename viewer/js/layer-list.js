// @ts-check
// The layer list: one row per city.json layer, a checkbox to show or hide it and a button to
// zoom to it; layers that are not loaded are listed greyed out with the reason.

/** @import { CityViewer } from "./city-viewer.js" */
/** @import { LayerSpec } from "../types/city" */

import { byId } from "./dom.js";

const ZOOM_ICON =
  '<svg viewBox="0 0 16 16" width="14" height="14" aria-hidden="true" fill="none" stroke="currentColor" stroke-width="1.5">' +
  '<circle cx="8" cy="8" r="4.5"/><path d="M8 1v3M8 12v3M1 8h3M12 8h3"/></svg>';

/** @param {CityViewer} viewer */
export function layerListTool(viewer) {
  const list = byId("layer-list", HTMLUListElement);

  /**
   * @param {LayerSpec} spec
   * @param {boolean} loaded
   */
  function row(spec, loaded) {
    const li = document.createElement("li");
    li.dataset.layer = spec.id;
    const label = document.createElement("label");
    const box = document.createElement("input");
    box.type = "checkbox";
    box.id = `layer-${spec.id}`;
    box.checked = loaded && viewer.layers.get(spec.id)?.handle.show === true;
    box.disabled = !loaded;
    const title = document.createElement("span");
    title.className = "title";
    title.textContent = spec.title ?? spec.id;
    title.title = `${spec.kind} · ${spec.url ?? ""}`;
    label.append(box, title);
    li.append(label);
    if (Number.isFinite(spec.count)) {
      const count = document.createElement("span");
      count.className = "count";
      count.textContent = Number(spec.count).toLocaleString("en");
      li.append(count);
    }
    list.append(li);
    return { li, box };
  }

  viewer.on("layeradded", ({ id, spec }) => {
    const { li, box } = row(spec, true);
    box.addEventListener("change", () => viewer.setLayerVisible(id, box.checked));
    const zoom = document.createElement("button");
    zoom.type = "button";
    zoom.className = "icon-button";
    zoom.title = "Zoom to layer";
    zoom.setAttribute("aria-label", `Zoom to ${spec.title ?? id}`);
    zoom.innerHTML = ZOOM_ICON;
    zoom.addEventListener("click", () => viewer.zoomTo(id));
    li.append(zoom);
  });

  viewer.on("layerfailed", ({ spec, reason }) => {
    const { li } = row(spec, false);
    li.classList.add(reason);
    li.title =
      reason === "unsupported"
        ? `Layers of kind "${spec.kind}" are not supported by this viewer yet`
        : "This layer could not be loaded (see the message above)";
  });

  viewer.on("layervisibility", ({ id, show }) => {
    const box = list.querySelector(`input#layer-${CSS.escape(id)}`);
    if (box instanceof HTMLInputElement) box.checked = show;
  });
}
