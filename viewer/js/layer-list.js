// @ts-check
// The layer tree: the city.json layers grouped by CIM level (CIM1 ground surface: terrain,
// imagery, lidar; CIM2 LOD1 buildings; CIM3-4 detailed models: CityJSON, reality meshes; CIM5-7
// BIM), each row with its level, a checkbox to show or hide it, a button to zoom to it and a
// transparency (透明度) slider; layers that are not loaded are listed greyed out with the reason.

/** @import { CityViewer } from "./city-viewer.js" */
/** @import { LayerSpec } from "../types/city" */

import { byId } from "./dom.js";
import { formatNumber, onLanguageChange, t } from "./i18n.js";

const ZOOM_ICON =
  '<svg viewBox="0 0 16 16" width="14" height="14" aria-hidden="true" fill="none" stroke="currentColor" stroke-width="1.5">' +
  '<circle cx="8" cy="8" r="4.5"/><path d="M8 1v3M8 12v3M1 8h3M12 8h3"/></svg>';

/** Each kind's level when city.json gives none (the `cim_level` of cim/layers). */
const DEFAULT_LEVEL = /** @type {Record<string, number>} */ ({
  terrain: 1,
  imagery: 1,
  pointcloud: 1,
  buildings: 2,
  cityjson: 3,
  mesh: 3,
  bim: 6,
});

/** The groups of the tree, in order: a layer goes to the first whose levels hold its own. */
const GROUPS = [
  { id: "cim1", levels: [1] },
  { id: "cim2", levels: [2] },
  { id: "cim3", levels: [3, 4] },
  { id: "bim", levels: [5, 6, 7] },
];

/** @param {LayerSpec} spec */
export function levelOf(spec) {
  const level = Number(/** @type {{ cim_level?: unknown }} */ (spec).cim_level);
  return Number.isInteger(level) && level >= 1 && level <= 7 ? level : (DEFAULT_LEVEL[spec.kind] ?? 2);
}

/** @param {CityViewer} viewer */
export function layerListTool(viewer) {
  const tree = byId("layer-tree", HTMLElement);
  /** @type {Map<string, { section: HTMLElement, list: HTMLUListElement }>} */
  const groups = new Map();

  /** @param {number} level */
  function groupFor(level) {
    const group = GROUPS.find((g) => g.levels.includes(level)) ?? GROUPS[1];
    let found = groups.get(group.id);
    if (!found) {
      const section = document.createElement("div");
      section.className = "layer-group";
      section.dataset.group = group.id;
      const heading = document.createElement("h3");
      heading.dataset.i18n = `layers.group.${group.id}`;
      heading.textContent = t(`layers.group.${group.id}`);
      const list = document.createElement("ul");
      list.className = "layer-list";
      section.append(heading, list);
      found = { section, list };
      groups.set(group.id, found);
      // groups in the order of GROUPS, whatever order their layers arrive in
      const rank = GROUPS.indexOf(group);
      const after = [...tree.children].find((el) => GROUPS.findIndex((g) => g.id === /** @type {HTMLElement} */ (el).dataset.group) > rank);
      tree.insertBefore(section, after ?? null);
    }
    return found.list;
  }

  /**
   * @param {LayerSpec} spec
   * @param {boolean} loaded
   */
  function row(spec, loaded) {
    const level = levelOf(spec);
    const li = document.createElement("li");
    li.dataset.layer = spec.id;
    li.dataset.level = String(level);
    const line = document.createElement("div");
    line.className = "layer-row";
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
    const badge = document.createElement("span");
    badge.className = "level";
    badge.textContent = t("layers.level", { level: String(level) });
    label.append(box, title);
    line.append(label, badge);
    if (Number.isFinite(spec.count)) {
      const count = document.createElement("span");
      count.className = "count";
      count.dataset.count = String(spec.count);
      count.textContent = formatNumber(Number(spec.count));
      line.append(count);
    }
    li.append(line);
    groupFor(level).append(li);
    return { li, line, box };
  }

  viewer.on("layeradded", ({ id, spec, handle }) => {
    const { li, line, box } = row(spec, true);
    box.addEventListener("change", () => viewer.setLayerVisible(id, box.checked));
    const zoom = document.createElement("button");
    zoom.type = "button";
    zoom.className = "icon-button zoom";
    zoom.innerHTML = ZOOM_ICON;
    zoom.addEventListener("click", () => viewer.zoomTo(id));
    line.append(zoom);
    // transparency: 0 % opaque ... 100 % invisible
    const slider = document.createElement("label");
    slider.className = "opacity-row";
    const caption = document.createElement("span");
    caption.className = "muted";
    const range = document.createElement("input");
    range.type = "range";
    range.id = `opacity-${id}`;
    range.min = "0";
    range.max = "100";
    range.step = "5";
    range.value = String(Math.round((1 - handle.opacity) * 100));
    const value = document.createElement("span");
    value.className = "muted opacity-value";
    slider.append(caption, range, value);
    li.append(slider);
    const label = () => {
      zoom.title = t("layers.zoomTo");
      zoom.setAttribute("aria-label", t("layers.zoomToNamed", { layer: spec.title ?? id }));
      caption.textContent = t("layers.transparency");
      range.setAttribute("aria-label", t("layers.transparencyOf", { layer: spec.title ?? id }));
      value.textContent = formatNumber(Number(range.value) / 100, { style: "percent" });
    };
    range.addEventListener("input", () => {
      viewer.setLayerOpacity(id, 1 - Number(range.value) / 100);
      label();
    });
    label();
    onLanguageChange(label);
  });

  viewer.on("layerfailed", ({ spec, reason }) => {
    const { li } = row(spec, false);
    li.classList.add(reason);
    const label = () => {
      li.title = reason === "unsupported" ? t("layers.unsupported", { kind: spec.kind }) : t("layers.failed");
    };
    label();
    onLanguageChange(label);
  });

  viewer.on("layervisibility", ({ id, show }) => {
    const box = tree.querySelector(`input#layer-${CSS.escape(id)}`);
    if (box instanceof HTMLInputElement) box.checked = show;
  });

  viewer.on("layeropacity", ({ id, opacity }) => {
    const range = tree.querySelector(`input#opacity-${CSS.escape(id)}`);
    if (range instanceof HTMLInputElement && Number(range.value) !== Math.round((1 - opacity) * 100)) {
      range.value = String(Math.round((1 - opacity) * 100));
      range.dispatchEvent(new Event("input"));
    }
  });

  onLanguageChange(() => {
    for (const el of tree.querySelectorAll(".count")) {
      if (el instanceof HTMLElement) el.textContent = formatNumber(Number(el.dataset.count));
    }
  });
}
