// Layer loaders, keyed by the `kind` field of a city.json layer.
//
// A loader is `async (layer, ctx) => handle`, where `ctx` is
//   { viewer, url: absolute URL of the layer's data, reportError(message, error) }
// and the handle it returns is
//   { layer, tileset (or null), get show(), set show(v), boundingSphere (or null) }.
// New kinds (terrain, imagery, ...) register themselves with `registerKind`.

const Cesium = window.Cesium;

const loaders = new Map();

export function registerKind(kind, loader) {
  loaders.set(kind, loader);
}

export function loaderFor(kind) {
  return loaders.get(kind) ?? null;
}

export function knownKinds() {
  return [...loaders.keys()];
}

async function load3DTiles(layer, ctx, options = {}) {
  const tileset = await Cesium.Cesium3DTileset.fromUrl(ctx.url, options);
  // With a listener attached Cesium no longer logs tile failures itself: we
  // collect them so that the page (and the tests) can report them.
  tileset.tileFailed.addEventListener((event) => {
    ctx.reportError(
      `${layer.title ?? layer.id}: a tile failed to load (${event.url ?? "unknown url"})`,
      event.message,
    );
  });
  ctx.viewer.scene.primitives.add(tileset);
  return {
    layer,
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
  };
}

registerKind("buildings", (layer, ctx) => load3DTiles(layer, ctx));

registerKind("bim", (layer, ctx) => load3DTiles(layer, ctx));

registerKind("pointcloud", (layer, ctx) =>
  load3DTiles(layer, ctx, {
    pointCloudShading: new Cesium.PointCloudShading({
      attenuation: true,
      geometricErrorScale: 1.0,
      eyeDomeLighting: true,
    }),
  }),
);
