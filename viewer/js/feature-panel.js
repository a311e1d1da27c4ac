// @ts-check
// The selection panel, docked under the tools (js/workspace.js): the selected feature's
// attributes, formatted by the layer's schema. Attributes named "Set.Property" (IFC property
// sets and quantity sets) are grouped by their set, each group collapsible; the others come
// first. BIM tiles store a boolean a set does not give an element as false (glTF metadata has no
// "no value" for booleans): a set whose every value is false or empty is taken as not applying
// to the element, and is left out rather than shown as a row of "no".

/** @import { CityViewer } from "./city-viewer.js" */
/** @import { PlainValue } from "./properties.js" */

import { hasApi } from "./api.js";
import { byId } from "./dom.js";
import { formatNumber, onLanguageChange, t } from "./i18n.js";
import { formatValue } from "./properties.js";

/** Tables up to this many rows open every group; longer ones open only the plain attributes. */
const OPEN_ALL_ROWS = 14;

/**
 * The identifier a tile's metadata gives an attribute name (cim.formats.glb.property_id).
 * @param {string} name
 */
export function propertyId(name) {
  const ident = name.trim().replace(/[^A-Za-z0-9_]/g, "_") || "_";
  return /^[0-9]/.test(ident) ? `_${ident}` : ident;
}

/**
 * The attribute rows grouped: "" (plain attributes) first, then each set in name order.
 * `names` maps a tile property id to the attribute's own name ("Pset_WallCommon_IsExternal"
 * -> "Pset_WallCommon.IsExternal"), from the layer's schema.
 * @param {Record<string, PlainValue>} properties
 * @param {Map<string, string>} [names]
 * @returns {[string, [key: string, name: string, value: PlainValue][]][]}
 */
export function groupProperties(properties, names = new Map()) {
  /** @type {Map<string, [string, string, PlainValue][]>} */
  const groups = new Map([["", []]]);
  for (const [key, value] of Object.entries(properties)) {
    const full = names.get(key) ?? key;
    const dot = full.indexOf(".");
    const set = dot > 0 ? full.slice(0, dot) : "";
    const name = dot > 0 ? full.slice(dot + 1) : full;
    if (!groups.has(set)) groups.set(set, []);
    groups.get(set)?.push([key, name, value]);
  }
  for (const [set, rows] of groups) {
    if (!set) continue;
    // a set with nothing but false and empty values does not apply to the element: its
    // booleans are no answer (see the notes at the top) and the rest is empty
    if (!rows.some(([, , v]) => v !== false && v !== null && v !== "")) groups.delete(set);
  }
  const plain = groups.get("") ?? [];
  const sets = [...groups].filter(([set]) => set).sort(([a], [b]) => a.localeCompare(b));
  return plain.length ? [["", plain], ...sets] : sets;
}

/**
 * A feature's linked objects, as /api/features/{layer}/{id} gives them.
 * @typedef {object} Links
 * @property {{ layer: string, id: string, title?: string, elements?: number }[]} [bim]  models in its footprint
 * @property {{ count: number, z_p50: number, z_p90: number, z_max: number } | null} [points]  its lidar points (a link shows the point clouds)
 * @property {string | null} [district]
 * @property {{ layer: string, id: string, title?: string } | null} [building]  a BIM element's building
 */

/** @param {CityViewer} viewer */
export function featurePanelTool(viewer) {
  const hint = byId("feature-hint", HTMLElement);
  const body = byId("feature-body", HTMLElement);
  const layerName = byId("feature-layer", HTMLElement);
  const rows = byId("feature-props", HTMLTableElement).tBodies[0];
  /** @type {Set<string>} sets the user opened or closed, and how */
  const toggled = new Set();
  const linkList = document.createElement("ul");
  linkList.id = "feature-links";
  body.append(linkList);
  /** @type {Links | null} */
  let links = null;
  let asked = 0;

  /**
   * Fly over a point inside the first feature that `query` finds and select it.
   * @param {Record<string, string>} query  /api/query filters
   */
  async function goTo(query) {
    const response = await fetch(`/api/query?${new URLSearchParams({ ...query, limit: "1" })}`);
    if (!response.ok) return;
    const [r] = (await response.json()).results ?? [];
    if (!r) return;
    const [lon, lat] = Array.isArray(r.anchor) ? r.anchor : [r.lon, r.lat];
    viewer.lookAt(lon, lat, r.top ?? 0, 120);
    await viewer.whenReady();
    viewer.selectById(r.layer, String(r.id), r.properties);
  }

  /** @param {string} text @param {(() => void) | null} [onClick] */
  function linkItem(text, onClick) {
    const li = document.createElement("li");
    if (onClick) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "link-button feature-link";
      button.textContent = text;
      button.addEventListener("click", onClick);
      li.append(button);
    } else {
      li.textContent = text;
    }
    return li;
  }

  function renderLinks() {
    /** @type {HTMLLIElement[]} */
    const items = [];
    for (const m of links?.bim ?? []) {
      items.push(linkItem(`${t("links.bim")}: ${m.title ?? m.id}`, () => void goTo({ layer: m.layer, model: m.id })));
    }
    const b = links?.building;
    if (b) items.push(linkItem(`${t("links.building")}: ${b.title ?? b.id}`, () => void goTo({ layer: b.layer, id: b.id })));
    const p = links?.points;
    if (p) {
      const m = (/** @type {number} */ v) => formatNumber(v, { maximumFractionDigits: 1 });
      const text = p.count > 0 ? t("links.points", { count: p.count, p50: m(p.z_p50), p90: m(p.z_p90), max: m(p.z_max) }) : t("links.pointsNone");
      // the link shows the city's point clouds (hidden at first), the building still selected
      const clouds = [...viewer.layers.values()].filter((l) => l.spec.kind === "pointcloud");
      items.push(linkItem(text, p.count > 0 && clouds.length ? () => clouds.forEach((l) => viewer.setLayerVisible(l.id, true)) : null));
    }
    if (links?.district) items.push(linkItem(t("links.district", { district: links.district })));
    if (items.length) {
      const head = document.createElement("li");
      head.className = "muted";
      head.textContent = t("links.title");
      items.unshift(head);
    }
    linkList.replaceChildren(...items);
  }

  /** Ask the server for the selection's linked objects (where it has the feature API). */
  async function fetchLinks() {
    const mine = ++asked;
    links = null;
    renderLinks();
    const sel = viewer.selection;
    if (!sel?.layerId || sel.id === null || !(await hasApi("/api/features/{layer}/{id}"))) return;
    try {
      const response = await fetch(`/api/features/${encodeURIComponent(sel.layerId)}/${encodeURIComponent(sel.id)}`);
      if (!response.ok || mine !== asked) return;
      links = (await response.json()).links ?? null;
      renderLinks();
    } catch {
      // no links shown
    }
  }

  function render() {
    const selection = viewer.selection;
    if (!selection) return;
    const { layerId, properties } = selection;
    const spec = layerId === null ? undefined : viewer.layers.get(layerId)?.spec;
    const schema = spec?.schema ?? {};
    layerName.textContent = spec?.title ?? layerId ?? t("feature.feature");
    /** @type {Map<string, string>} tile property id -> attribute name (and its type) */
    const names = new Map();
    for (const name of Object.keys(schema)) if (!names.has(propertyId(name))) names.set(propertyId(name), name);
    const groups = groupProperties(properties, names);
    const total = groups.reduce((n, [, r]) => n + r.length, 0);
    /** @type {HTMLTableRowElement[]} */
    const out = [];
    for (const [set, members] of groups) {
      let open = true;
      if (set) {
        open = total <= OPEN_ALL_ROWS;
        if (toggled.has(set)) open = !open;
        const tr = document.createElement("tr");
        tr.className = "group";
        tr.dataset.group = set;
        const th = document.createElement("th");
        th.colSpan = 2;
        const button = document.createElement("button");
        button.type = "button";
        button.className = "group-toggle";
        button.setAttribute("aria-expanded", String(open));
        button.textContent = `${set} (${members.length})`;
        button.addEventListener("click", () => {
          if (toggled.has(set)) toggled.delete(set);
          else toggled.add(set);
          const nowOpen = button.getAttribute("aria-expanded") !== "true";
          button.setAttribute("aria-expanded", String(nowOpen));
          for (const row of rows.querySelectorAll(`tr[data-set="${CSS.escape(set)}"]`)) {
            if (row instanceof HTMLElement) row.hidden = !nowOpen;
          }
        });
        th.append(button);
        tr.append(th);
        out.push(tr);
      }
      for (const [key, name, value] of members) {
        const tr = document.createElement("tr");
        tr.dataset.key = key;
        if (set) tr.dataset.set = set;
        tr.hidden = !open;
        const th = document.createElement("th");
        th.scope = "row";
        th.textContent = name;
        th.title = names.get(key) ?? key;
        const td = document.createElement("td");
        const text = formatValue(value, schema[key] ?? schema[names.get(key) ?? ""]);
        td.textContent = text;
        td.dataset.value = JSON.stringify(value);
        if (text === "") td.className = "empty";
        tr.append(th, td);
        out.push(tr);
      }
    }
    rows.replaceChildren(...out);
    hint.hidden = true;
    body.hidden = false;
  }

  viewer.on("select", () => {
    toggled.clear();
    render();
    void fetchLinks();
  });

  viewer.on("deselect", () => {
    body.hidden = true;
    hint.hidden = false;
    rows.replaceChildren();
    asked++;
    links = null;
    renderLinks();
  });
  onLanguageChange(() => {
    render();
    renderLinks();
  });

  byId("feature-clear", HTMLButtonElement).addEventListener("click", () => viewer.clearSelection());
}
