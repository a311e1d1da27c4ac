// @ts-check
// The selection panel: the selected feature's attributes, formatted by the layer's schema.

/** @import { CityViewer } from "./city-viewer.js" */

import { byId } from "./dom.js";
import { formatValue } from "./properties.js";

/** @param {CityViewer} viewer */
export function featurePanelTool(viewer) {
  const hint = byId("feature-hint", HTMLElement);
  const body = byId("feature-body", HTMLElement);
  const layerName = byId("feature-layer", HTMLElement);
  const rows = byId("feature-props", HTMLTableElement).tBodies[0];

  viewer.on("select", ({ layerId, properties }) => {
    const spec = layerId === null ? undefined : viewer.layers.get(layerId)?.spec;
    const schema = spec?.schema ?? {};
    layerName.textContent = spec?.title ?? layerId ?? "Feature";
    rows.replaceChildren(
      ...Object.entries(properties).map(([key, value]) => {
        const tr = document.createElement("tr");
        tr.dataset.key = key;
        const th = document.createElement("th");
        th.scope = "row";
        th.textContent = key;
        const td = document.createElement("td");
        const text = formatValue(value, schema[key]);
        td.textContent = text;
        td.dataset.value = JSON.stringify(value);
        if (text === "") td.className = "empty";
        tr.append(th, td);
        return tr;
      }),
    );
    hint.hidden = true;
    body.hidden = false;
  });

  viewer.on("deselect", () => {
    body.hidden = true;
    hint.hidden = false;
    rows.replaceChildren();
  });

  byId("feature-clear", HTMLButtonElement).addEventListener("click", () => viewer.clearSelection());
}
