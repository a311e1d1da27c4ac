// @ts-check
// The one DOM look-up the tools share: an element of index.html, checked at run time and typed.

/**
 * @template {HTMLElement} T
 * @param {string} id
 * @param {new () => T} type  e.g. HTMLInputElement
 * @returns {T}
 */
export function byId(id, type) {
  const element = document.getElementById(id);
  if (!(element instanceof type)) throw new Error(`index.html lacks a <${type.name}> #${id}`);
  return element;
}
