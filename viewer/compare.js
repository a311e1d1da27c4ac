// @ts-check
// The multi-screen page (compare.html, 多屏比对): `?views=N` (2 to 4, default 2) CityViewers in
// a grid over one city.json (fetched once, shared), cameras linked (js/multiscreen.js), each view
// with its own layer picker. `?v=,v1` names the version each view shows (empty or "current": the
// city as it is; otherwise /v/{version}/city/city.json, when the server keeps versions).
// window.cim is the scripting surface: views, ready, errors, whenReady, link.

/** @import { City } from "./types/city" */

import messages from "./i18n/compare.js";
import * as i18n from "./js/i18n.js";
import { byId } from "./js/dom.js";
import { CityViewer } from "./js/city-viewer.js";
import { layerPicker, linkCameras } from "./js/multiscreen.js";

i18n.addMessages(messages);
const params = new URLSearchParams(window.location.search);
const count = Math.min(Math.max(Math.round(Number(params.get("views") ?? 2)) || 2, 2), 4);
const versions = (params.get("v") ?? "").split(",");

const grid = byId("views", HTMLElement);
grid.dataset.views = String(count);
/** @type {CityViewer[]} */
const views = [];
for (let i = 0; i < count; i++) {
  const cell = document.createElement("section");
  cell.className = "view";
  cell.dataset.view = String(i + 1);
  const scene = document.createElement("div");
  scene.className = "view-scene";
  scene.id = `view-${i + 1}`;
  cell.append(scene);
  grid.append(cell);
  const view = new CityViewer(scene);
  layerPicker(view, i + 1, cell);
  views.push(view);
}
const link = linkCameras(views);

const status = byId("compare-status", HTMLElement);
const title = byId("city-name", HTMLElement);
function render() {
  const city = views[0].city;
  const name = city ? (city.title ?? city.name ?? i18n.t("city.defaultTitle")) : "";
  if (city) {
    delete title.dataset.i18n;
    title.textContent = i18n.t("compare.pageTitle", { city: name });
    document.title = title.textContent;
  }
  const errors = views.flatMap((v) => v.errors);
  status.textContent = errors.length ? i18n.t("status.errors", { n: errors.length }) : "";
}
for (const view of views) {
  view.on("cityload", render);
  view.on("error", render);
}
const toggle = byId("language-toggle", HTMLButtonElement);
toggle.addEventListener("click", () => i18n.setLanguage(i18n.language() === "en" ? "zh-CN" : "en"));
const toggleLang = () => (toggle.lang = i18n.language() === "en" ? "zh-CN" : "en");
i18n.onLanguageChange(() => {
  toggleLang();
  render();
});
toggleLang();
i18n.translatePage();

window.addEventListener("unhandledrejection", (event) => {
  views[0].reportError(i18n.t("error.unexpected"), event.reason);
  event.preventDefault();
});

/** city.json of each version asked for, fetched once whatever the number of views showing it */
/** @type {Map<string, Promise<City | null>>} */
const fetched = new Map();
/** @param {string} url @param {CityViewer} view */
function cityAt(url, view) {
  let doc = fetched.get(url);
  if (!doc) {
    doc = fetch(url, { cache: "no-cache" })
      .then(async (response) => {
        if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
        return /** @type {City} */ (await response.json());
      })
      .catch((error) => {
        view.reportError(i18n.t("error.city"), error);
        return null;
      });
    fetched.set(url, doc);
  }
  return doc;
}

const cim = {
  /** the CityViewers, view 1 first */
  views,
  /** the Cesium.Viewers */
  get viewers() {
    return views.map((v) => v.cesium);
  },
  get ready() {
    return views.every((v) => v.ready);
  },
  get frames() {
    return views.reduce((n, v) => n + v.frames, 0);
  },
  get errors() {
    return views.flatMap((v) => v.errors);
  },
  whenReady: () => Promise.all(views.map((v) => v.whenReady())).then(() => undefined),
  /** the camera link: pushes() counts the moves copied to the other views */
  link,
  i18n,
  t: i18n.t,
};
Object.assign(window, { cim });

await Promise.all(
  views.map(async (view, i) => {
    const version = (versions[i] ?? "").trim();
    const url = new URL(version && version !== "current" ? `/v/${encodeURIComponent(version)}/city/city.json` : "/city/city.json", window.location.href).href;
    const city = await cityAt(url, view);
    if (city) await view.load(url, structuredClone(city));
    else view.unsettle();
  }),
);
