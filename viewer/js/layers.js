// @ts-check
// Layer loaders, keyed by the `kind` field of a city.json layer. New kinds (vector, ...)
// register themselves with `registerKind`; the CityViewer asks `loaderFor(kind)`.

/** @import { ImageryLayerSpec, LayerSpec } from "../types/city" */

/**
 * What a loader returns: enough for the viewer to show, hide, frame and wait for a layer.
 * @typedef {object} LayerHandle
 * @property {Cesium.Cesium3DTileset | null} tileset  3D Tiles layers only
 * @property {Cesium.ImageryLayer} [imagery]  imagery layers only
 * @property {boolean} show
 * @property {Cesium.BoundingSphere | null} boundingSphere
 * @property {number} opacity  0 (invisible) to 1 (opaque): the layer tree's transparency slider
 */

/**
 * @typedef {object} LoaderContext
 * @property {Cesium.Viewer} viewer
 * @property {string} url  absolute URL of the layer's data
 * @property {(message: string, detail?: unknown) => void} reportError
 */

/** @typedef {(layer: LayerSpec, ctx: LoaderContext) => Promise<LayerHandle> | LayerHandle} Loader */

/** @type {Map<string, Loader>} */
const loaders = new Map();

/**
 * @param {string} kind
 * @param {Loader} loader
 */
export function registerKind(kind, loader) {
  loaders.set(kind, loader);
}

/** @param {string} kind */
export function loaderFor(kind) {
  return loaders.get(kind) ?? null;
}

export function knownKinds() {
  return [...loaders.keys()];
}

/**
 * What a 3D Tiles layer's style is made of: a tool's `show` condition (the BIM filters) and the
 * layer's opacity. Both go into one Cesium3DTileStyle, so neither undoes the other.
 * @typedef {object} TilesetLook
 * @property {string} show  a style expression, "" for every feature
 * @property {number} opacity
 */

/** @type {WeakMap<Cesium.Cesium3DTileset, TilesetLook>} */
const looks = new WeakMap();

/** @param {Cesium.Cesium3DTileset} tileset */
function lookOf(tileset) {
  let look = looks.get(tileset);
  if (!look) looks.set(tileset, (look = { show: "", opacity: 1 }));
  return look;
}

/** @param {Cesium.Cesium3DTileset} tileset */
function applyLook(tileset) {
  const { show, opacity } = lookOf(tileset);
  /** @type {Record<string, string>} */
  const style = {};
  if (show) style.show = show;
  // the colour multiplies the tile's own: white keeps it, alpha makes it see-through
  if (opacity < 1) style.color = `color('white', ${opacity.toFixed(3)})`;
  tileset.style = Object.keys(style).length ? new Cesium.Cesium3DTileStyle(style) : undefined;
}

/**
 * Show only the features of a 3D Tiles layer that meet `condition` (a 3D Tiles style
 * expression; "" shows every feature). Keeps the layer's opacity.
 * @param {Cesium.Cesium3DTileset} tileset
 * @param {string} condition
 */
export function setTilesetShow(tileset, condition) {
  lookOf(tileset).show = condition;
  applyLook(tileset);
}

/**
 * @param {LayerSpec} layer
 * @param {LoaderContext} ctx
 * @param {Cesium.Cesium3DTileset.ConstructorOptions} [options]
 * @returns {Promise<LayerHandle>}
 */
async function load3DTiles(layer, ctx, options = {}) {
  const tileset = await Cesium.Cesium3DTileset.fromUrl(ctx.url, options);
  // With a listener attached Cesium no longer logs tile failures itself: we
  // collect them so that the page (and the tests) can report them.
  tileset.tileFailed.addEventListener((/** @type {{ url?: string, message?: string }} */ event) => {
    ctx.reportError(
      `${layer.title ?? layer.id}: a tile failed to load (${event.url ?? "unknown url"})`,
      event.message,
    );
  });
  ctx.viewer.scene.primitives.add(tileset);
  return {
    tileset,
    get show() {
      return tileset.show;
    },
    set show(value) {
      tileset.show = Boolean(value);
    },
    get boundingSphere() {
      return tileset.boundingSphere;
    },
    get opacity() {
      return lookOf(tileset).opacity;
    },
    set opacity(value) {
      lookOf(tileset).opacity = clampOpacity(value);
      applyLook(tileset);
      ctx.viewer.scene.requestRender();
    },
  };
}

/** @param {number} value */
function clampOpacity(value) {
  return Number.isFinite(value) ? Math.min(Math.max(value, 0), 1) : 1;
}

registerKind("buildings", (layer, ctx) => load3DTiles(layer, ctx));

registerKind("bim", (layer, ctx) => load3DTiles(layer, ctx));

registerKind("cityjson", (layer, ctx) => load3DTiles(layer, ctx));
// Reality meshes and models: textured GLB tiles (unlit materials, WebP textures), REPLACE LODs.
registerKind("mesh", (layer, ctx) => load3DTiles(layer, ctx));

registerKind("pointcloud", (layer, ctx) =>
  load3DTiles(layer, ctx, {
    // points are spaced by the node's geometric error: refine sooner than meshes do
    maximumScreenSpaceError: 4,
    pointCloudShading: new Cesium.PointCloudShading({
      attenuation: true,
      geometricErrorScale: 1.0,
      eyeDomeLighting: true,
    }),
  }),
);

// Imagery tiles (an XYZ template) draped on the globe. city.json states the tiling scheme.
registerKind("imagery", (spec, ctx) => {
  const layer = /** @type {ImageryLayerSpec} */ (spec);
  const b = layer.bounds;
  // new URL() percent-encodes the template's braces; Cesium needs them literal.
  const template = ctx.url.replace(/%7B/gi, "{").replace(/%7D/gi, "}");
  const provider = new Cesium.UrlTemplateImageryProvider({
    url: template,
    tilingScheme:
      layer.tiling === "Geographic" ? new Cesium.GeographicTilingScheme() : new Cesium.WebMercatorTilingScheme(),
    minimumLevel: layer.minzoom ?? 0,
    maximumLevel: layer.maxzoom,
    rectangle: b ? Cesium.Rectangle.fromDegrees(b.west, b.south, b.east, b.north) : undefined,
    credit: layer.title ?? layer.id,
  });
  provider.errorEvent.addEventListener((/** @type {Cesium.TileProviderError} */ error) => {
    ctx.reportError(`${layer.title ?? layer.id}: an imagery tile failed to load`, error?.message ?? error);
  });
  const imagery = ctx.viewer.imageryLayers.addImageryProvider(provider);
  return {
    tileset: null,
    imagery,
    get show() {
      return imagery.show;
    },
    set show(value) {
      imagery.show = Boolean(value);
      ctx.viewer.scene.requestRender();
    },
    boundingSphere: null,
    get opacity() {
      return imagery.alpha;
    },
    set opacity(value) {
      imagery.alpha = clampOpacity(value);
      ctx.viewer.scene.requestRender();
    },
  };
});

// Quantized-mesh terrain (a folder holding layer.json). Hiding it puts the plain ellipsoid back.
registerKind("terrain", async (_layer, ctx) => {
  const folder = ctx.url.endsWith("/") ? ctx.url : `${ctx.url}/`;
  const provider = await Cesium.CesiumTerrainProvider.fromUrl(folder, { requestVertexNormals: true });
  const scene = ctx.viewer.scene;
  scene.terrainProvider = provider;
  let shown = true;
  let opacity = 1;
  const globe = scene.globe;
  return {
    tileset: null,
    get show() {
      return shown;
    },
    set show(value) {
      shown = Boolean(value);
      scene.terrainProvider = shown ? provider : new Cesium.EllipsoidTerrainProvider();
      scene.requestRender();
    },
    boundingSphere: null,
    // the ground (terrain and the imagery draped on it) turns see-through: what lies under it shows
    get opacity() {
      return opacity;
    },
    set opacity(value) {
      opacity = clampOpacity(value);
      globe.translucency.enabled = opacity < 1;
      globe.translucency.frontFaceAlpha = opacity;
      globe.translucency.backFaceAlpha = opacity;
      scene.requestRender();
    },
  };
});
