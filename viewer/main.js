// @ts-check
// cim viewer: a CityViewer over /city/city.json with its tools. Each tool is a module that
// subscribes to the viewer's events (js/city-viewer.js); window.cim is the scripting surface.
// The sidebar's layout is js/workspace.js (a new panel: one registerPanel call and its own
// messages file); every text comes from the message catalogue (js/i18n.js).

import * as i18n from "./js/i18n.js";
import { setUpWorkspace, openPanel, registerPanel } from "./js/workspace.js";
import { accountTool } from "./js/account.js";
import { CityViewer, HIGHLIGHT_CSS } from "./js/city-viewer.js";
import { statusTool } from "./js/status.js";
import { layerListTool } from "./js/layer-list.js";
import { featurePanelTool } from "./js/feature-panel.js";
import { searchTool } from "./js/search.js";
import { sunTool } from "./js/sun.js";
import { measureTool } from "./js/measure.js";
import { bimTool } from "./js/bim.js";
import { pointCloudTool } from "./js/pointcloud.js";
import { cityJsonTool } from "./js/cityjson.js";
import { annotationTool } from "./js/annotations.js";
import { analysisTool } from "./js/analysis.js";
import { shareTool } from "./js/share.js";
import { queryTool } from "./js/query.js";
import { swipeTool } from "./js/swipe.js";
import { diffTool } from "./js/diff.js";

setUpWorkspace();
const viewer = new CityViewer("cesium-container");
const account = accountTool();
viewer.install(statusTool);
viewer.install(layerListTool);
viewer.install(featurePanelTool);
const search = viewer.install(searchTool);
const sun = viewer.install(sunTool);
const measure = viewer.install(measureTool);
const bim = viewer.install(bimTool);
const points = viewer.install(pointCloudTool);
const cityjson = viewer.install(cityJsonTool);
const annotations = viewer.install(annotationTool);
const analysis = viewer.install(analysisTool);
const query = viewer.install(queryTool);
const swipe = viewer.install(swipeTool);
const share = viewer.install((v) =>
  shareTool(v, {
    queryText: search.text,
    runQuery: search.run,
    panelQuery: query.state,
    restorePanelQuery: query.restore,
    swipeState: swipe.state,
    restoreSwipe: swipe.restore,
  }),
);
swipe.onChange(() => share.update());
search.onChange(() => share.update());
query.onRun(() => share.update());
const diff = viewer.install(diffTool);

window.addEventListener("unhandledrejection", (event) => {
  viewer.reportError(i18n.t("error.unexpected"), event.reason);
  event.preventDefault();
});

/** @typedef {typeof cim} Cim */
// Scripting and tests. Pixel arguments are canvas pixels, except canvasCenter() (page pixels).
const cim = {
  cityViewer: viewer,
  /** the selection's colour (CSS, sRGB) */
  highlightColour: HIGHLIGHT_CSS,
  /** the Cesium.Viewer */
  get viewer() {
    return viewer.cesium;
  },
  get city() {
    return viewer.city;
  },
  /** id -> Cesium3DTileset, for the 3D Tiles layers */
  get layers() {
    return Object.fromEntries([...viewer.layers.values()].flatMap(({ id, handle }) => (handle.tileset ? [[id, handle.tileset]] : [])));
  },
  get ready() {
    return viewer.ready;
  },
  get frames() {
    return viewer.frames;
  },
  get errors() {
    return viewer.errors;
  },
  /** properties of the selected feature, or null */
  get selection() {
    return viewer.selection?.properties ?? null;
  },
  pickAt: viewer.pickAt.bind(viewer),
  select: viewer.select.bind(viewer),
  clearSelection: viewer.clearSelection.bind(viewer),
  lookAt: viewer.lookAt.bind(viewer),
  flyHome: viewer.flyHome.bind(viewer),
  whenReady: viewer.whenReady.bind(viewer),
  canvasCenter: viewer.canvasCenter.bind(viewer),
  reset: viewer.reset.bind(viewer),
  search: search.run,
  showResult: search.showResult,
  setSun: sun.set,
  measure: measure.measure,
  clearMeasurements: measure.clear,
  bim,
  points,
  cityjson,
  annotations,
  analysis,
  diff,
  account,
  share,
  query,
  /** swipe comparison (卷帘比对): enable, setSide, setPosition, compareVersion, ... */
  swipe,
  /** the message catalogue: t(key, params), setLanguage("en" | "zh-CN"), language(), ... */
  i18n,
  t: i18n.t,
  workspace: { registerPanel, openPanel },
};
window.cim = cim;

// A city that lets no one in without signing in shows its sign-in form and loads nothing else.
await account.check();
if (account.mayLoad) viewer.load("/city/city.json");
