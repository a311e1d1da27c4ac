// city.json as `cim build` writes it: the fields the viewer reads.

import type { PlainValue } from "../js/properties.js";

export interface Origin {
  lon: number;
  lat: number;
  height: number;
}

/** Degrees and ellipsoidal metres. */
export interface Bounds {
  west: number;
  south: number;
  east: number;
  north: number;
  min_height?: number;
  max_height?: number;
}

export interface City {
  name: string;
  title?: string;
  crs?: string;
  origin?: Origin;
  bounds?: Bounds;
  search?: { url?: string; api?: string };
  layers?: LayerSpec[];
}

/** One entry of city.json's `layers`; the kinds below add their own fields. */
export interface LayerSpec {
  id: string;
  kind: string;
  url: string;
  title?: string;
  /** false: the layer opens hidden */
  visible?: boolean;
  count?: number;
  bounds?: Bounds;
  /** property name -> metadata type (STRING, FLOAT32, ...) */
  schema?: Record<string, string>;
  /** the property that identifies a feature (search results name it) */
  id_property?: string;
  /** the layer's CIM level (1-7) */
  cim_level?: number;
}

export interface BimLayerSpec extends LayerSpec {
  kind: "bim";
  classes?: string[];
  storey_names?: string[];
  /** the element properties that carry the viewer's notions */
  viewer_properties?: { class?: string; storey?: string; model?: string; id?: string };
  /** one entry per model, in the order of the root tile's children */
  models?: BimModelEntry[];
}

export interface BimModelEntry {
  model: string;
  source?: string;
  elements?: number;
  /** the model's storeys, in elevation order (metres, in the model's frame) */
  storeys?: { name: string | null; elevation: number | null }[];
}

export interface PointCloudLayerSpec extends LayerSpec {
  kind: "pointcloud";
  /** ASPRS class code -> name and point count */
  classes?: Record<string, { name?: string; count?: number }>;
  has_color?: boolean;
}

export interface CityJSONLayerSpec extends LayerSpec {
  kind: "cityjson";
  /** the LoD shown, every LoD of the file, and objects shown below it (LoD -> count) */
  lod?: string;
  lods?: string[];
  lod_fallback?: Record<string, number>;
  /** semantic surface type -> its code in the tiles' `semantic_surface`, surfaces shown and skipped */
  surfaces?: Record<string, { code: number; count: number; skipped?: number }>;
  /** the vertex property attribute that holds the surface codes */
  viewer_properties?: { surface?: string };
}

export interface ImageryLayerSpec extends LayerSpec {
  kind: "imagery";
  tiling?: "WebMercator" | "Geographic";
  minzoom?: number;
  maxzoom?: number;
}

/** A row of /api/search. */
export interface SearchResult {
  layer: string;
  id: string;
  title: string;
  lon: number;
  lat: number;
  base?: number;
  top?: number;
  properties: Record<string, PlainValue>;
  /** a point inside the feature's footprint [lon, lat] (the fly-to target), when the API gives one */
  anchor?: [number, number];
}
