// @ts-check
// What the server's JSON API offers: its OpenAPI document (/api/openapi.json), read once, so
// that a panel shows only where its operations exist (and asks nothing that would answer 404).

/** @type {Promise<Set<string>> | null} */
let paths = null;

/**
 * Whether the server has the operation at `path` (as the OpenAPI document spells it, e.g.
 * "/api/features/{layer}/{id}").
 * @param {string} path
 * @returns {Promise<boolean>}
 */
export async function hasApi(path) {
  paths ??= fetch("/api/openapi.json")
    .then((response) => (response.ok ? response.json() : { paths: {} }))
    .then((doc) => new Set(Object.keys(doc?.paths ?? {})))
    .catch(() => new Set());
  return (await paths).has(path);
}
