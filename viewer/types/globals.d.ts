// CesiumJS is loaded by a classic <script> (index.html) and used as the global `Cesium`;
// its npm package ships the types of that namespace, for values and types alike.
import * as CesiumModule from "cesium";

declare global {
  export import Cesium = CesiumModule;

  interface Window {
    Cesium: typeof CesiumModule;
    CESIUM_BASE_URL: string;
    /** The scripting surface (main.js). */
    cim: import("../main.js").Cim;
  }
}

export {};
