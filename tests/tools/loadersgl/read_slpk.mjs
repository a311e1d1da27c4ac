// Read an I3S scene layer package back with loaders.gl, as a client would, and print JSON.
//
//   node read_slpk.mjs PACKAGE.slpk
//
// The package is opened with @loaders.gl/i3s's parseSLPKArchive (which uses the package's
// @specialIndexFileHASH128@ when it is the last entry) and served over HTTP on 127.0.0.1 the way
// loaders.gl's own SLPK server does (paths without extensions, 'http' mode); then I3SLoader loads
// the layer, its node pages, every node's geometry (I3SContentLoader: positions come back as
// ECEF metres) and I3SAttributeLoader each node's attribute buffers. Printed: the layer's type,
// version, fields, the node tree (children, lodSelection, obb), per node the feature count, the
// vertex count, every vertex (ECEF, mm), its normal (as stored: east-north-up) and feature id, the attribute values per feature,
// a textured node's texture bytes and texture coordinates, and one feature's attributes
// through loadFeatureAttributes (the API a picking client calls).
import {readFileSync} from 'node:fs';
import {createServer} from 'node:http';
import {load} from '@loaders.gl/core';
import {DataViewReadableFile} from '@loaders.gl/zip';
import {
  I3SLoader,
  I3SAttributeLoader,
  parseSLPKArchive,
  loadFeatureAttributes
} from '@loaders.gl/i3s';

const [file] = process.argv.slice(2);
if (!file) {
  console.error('usage: node read_slpk.mjs PACKAGE.slpk');
  process.exit(2);
}
const bytes = readFileSync(file);
const messages = [];
// a DataView over its own ArrayBuffer: loaders.gl's zip header parser slices `view.buffer` from 0,
// which a Buffer sharing Node's pool (small files) does not start at
const whole = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
const archive = await parseSLPKArchive(
  new DataViewReadableFile(new DataView(whole)),
  (msg) => messages.push(msg)
);

const server = createServer(async (req, res) => {
  const path = decodeURIComponent(req.url.split('?')[0]).replace(/^\/layers\/0\/?/, '');
  try {
    const data = await archive.getFile(path, 'http');
    res.writeHead(200, {'Content-Type': 'application/octet-stream'});
    res.end(Buffer.from(data));
  } catch (error) {
    res.writeHead(404);
    res.end(String(error));
  }
});
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const base = `http://127.0.0.1:${server.address().port}/layers/0`;

const options = {
  worker: false,
  i3s: {loadContent: false, useDracoGeometry: false, useCompressedTextures: false, decodeTextures: false}
};
try {
  const tileset = await load(base, I3SLoader, options);
  const pages = tileset.nodePagesTile;
  const tilesetOptions = {
    store: tileset.store,
    attributeStorageInfo: tileset.attributeStorageInfo || [],
    fields: tileset.fields || []
  };
  const out = {
    hashIndex: !messages.some((m) => m.includes('doesnt contain hash file')),
    layerType: tileset.layerType,
    version: tileset.store.version,
    spatialReference: tileset.spatialReference,
    fields: (tileset.fields || []).map((f) => ({name: f.name, type: f.type, alias: f.alias})),
    attributeStorageInfo: (tileset.attributeStorageInfo || []).map((a) => ({key: a.key, name: a.name})),
    nodes: []
  };
  const queue = [0];
  while (queue.length) {
    const id = queue.shift();
    const tile = await pages.formTileFromNodePages(id);
    const raw = await pages.getNodeById(id);
    const node = {
      id,
      parent: raw.parentIndex ?? null,
      children: tile.children.map((c) => Number(c.id)),
      lodSelection: tile.lodSelection,
      obb: tile.obb,
      mbs: tile.mbs,
      featureCount: raw.mesh ? raw.mesh.geometry.featureCount : 0,
      vertexCount: 0
    };
    queue.push(...node.children);
    if (tile.contentUrl) {
      const content = await load(tile.contentUrl, I3SLoader, {
        ...options,
        i3s: {...options.i3s, isTileset: false, isTileHeader: false, _tileOptions: tile, _tilesetOptions: tilesetOptions}
      });
      node.vertexCount = content.vertexCount;
      node.positions = Array.from(content.attributes.positions.value, (v) => Math.round(v * 1000) / 1000);
      node.featureIds = Array.from(content.featureIds);
      node.normals = Array.from(content.attributes.normals.value, (v) => Math.round(v * 1e4) / 1e4);
      node.colors = Array.from(content.attributes.colors.value.slice(0, 40));
      if (tile.textureUrl) {
        const texture = content.material?.pbrMetallicRoughness?.baseColorTexture?.texture?.source?.image;
        node.texture = {format: tile.textureFormat, bytes: Array.from(new Uint8Array(texture))};
        node.uv = Array.from(content.attributes.texCoords.value, (v) => Math.round(v * 1e6) / 1e6);
      }
      node.attributes = {};
      for (let i = 0; i < tile.attributeUrls.length; i++) {
        const info = tilesetOptions.attributeStorageInfo[i];
        const attributeType = info.objectIds ? 'Oid32' : info.attributeValues.valueType;
        const values = await load(tile.attributeUrls[i], I3SAttributeLoader, {
          ...options,
          attributeName: info.name,
          attributeType
        });
        const column = values[info.name];
        node.attributes[info.name] = Array.from(column, (v) =>
          typeof v === 'number' && Number.isNaN(v) ? null : typeof v === 'bigint' ? Number(v) : v
        );
      }
      const oids = node.attributes.OBJECTID || [];
      if (oids.length) {
        const fakeTile = {tileset: {tileset: tileset}, header: {attributeUrls: tile.attributeUrls}};
        node.picked = {id: oids[0], attributes: await loadFeatureAttributes(fakeTile, oids[0], options)};
      }
    }
    out.nodes.push(node);
  }
  out.nodeCount = out.nodes.length;
  process.stdout.write(JSON.stringify(out));
} finally {
  server.close();
}
