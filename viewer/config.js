// Cesium resolves its workers, assets and widgets relative to this URL.
// Everything is served by the cim server itself: the viewer works offline.
// (A file, not an inline script: the server's Content-Security-Policy allows no inline script.)
window.CESIUM_BASE_URL = "/cesium/";
