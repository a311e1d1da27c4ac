// @ts-check
// The layout of the sidebar (the "workspace"): a header (city, language toggle, account), the
// messages, a scrolling column of collapsible tool panels, and the selection docked below them,
// so the selected feature's attributes are in view at 1280x800 whatever the tools above hold.
//
// Adding a panel is one registration call plus its own messages file:
//
//   // viewer/i18n/annotations.js
//   export default { "zh-CN": { "annotations.title": "批注", ... }, en: { "annotations.title": "Annotations", ... } };
//
//   // viewer/js/annotations.js
//   import messages from "../i18n/annotations.js";
//   import { registerPanel } from "./workspace.js";
//   const body = registerPanel({ id: "annotations", title: "annotations.title", order: 70, messages });
//   body.append(...);   // the panel's controls; text through t("annotations....") from ./i18n.js
//
// The panel is a <section class="panel" id="annotations-panel"> in #tools; its heading toggles it
// open or closed (remembered in localStorage), panels are ordered by `order` (the built-in ones:
// search 10, query 15, layers 20, points 30, cityjson 32, bim 34, measure 40, sun 50, bookmarks 90).
// A <section class="panel"> written into #tools in index.html becomes collapsible the same way
// (its order: data-order, else where it stands), and so does one that a module puts anywhere
// else in the sidebar (it is moved into #tools; collapsible if it has its <h2> by then). Panels
// open by default.

/** @import { MessageBundle } from "./i18n.js" */

import { byId } from "./dom.js";
import { addMessages, language, onLanguageChange, setLanguage, t, translatePage } from "./i18n.js";

const COLLAPSED_KEY = "cim.panels.collapsed";

/** @type {Record<string, number>} built-in panels' places */
const BUILT_IN_ORDER = {
  search: 10,
  query: 15,
  layers: 20,
  points: 30,
  cityjson: 32,
  bim: 34,
  measure: 40,
  sun: 50,
  stats: 55,
  analysis: 58,
  annotations: 60,
  bookmarks: 90,
};

/**
 * @typedef {object} PanelOptions
 * @property {string} id  the panel's name: the section is #ID-panel, its body #ID-body
 * @property {string} title  the message key of its heading
 * @property {number} [order]  its place among the panels (see the notes at the top)
 * @property {MessageBundle} [messages]  its messages, added to the catalogues
 * @property {boolean} [hidden]  start hidden (a panel that shows once it has something)
 */

/** @returns {Set<string>} */
function collapsedPanels() {
  try {
    const raw = JSON.parse(window.localStorage.getItem(COLLAPSED_KEY) ?? "[]");
    return new Set(Array.isArray(raw) ? raw.map(String) : []);
  } catch {
    return new Set();
  }
}

/** @param {Set<string>} names */
function rememberCollapsed(names) {
  try {
    window.localStorage.setItem(COLLAPSED_KEY, JSON.stringify([...names].sort()));
  } catch {
    // not remembered
  }
}

/** @param {HTMLElement} section */
function panelName(section) {
  return section.dataset.panel ?? section.id.replace(/-panel$/, "");
}

/** @param {HTMLElement} section */
function orderOf(section) {
  const n = Number(section.dataset.order);
  return Number.isFinite(n) ? n : 1000;
}

/**
 * Make a panel collapsible: its heading becomes a button that opens and closes the rest.
 * @param {HTMLElement} section
 */
function makeCollapsible(section) {
  if (section.dataset.collapsible === "true") return;
  section.dataset.collapsible = "true";
  const name = panelName(section);
  const heading = section.querySelector(":scope > h2");
  const body = document.createElement("div");
  body.className = "panel-body";
  body.id = `${name}-body`;
  for (const child of [...section.childNodes]) if (child !== heading) body.append(child);
  section.append(body);
  if (!(heading instanceof HTMLElement)) return;
  const button = document.createElement("button");
  button.type = "button";
  button.className = "panel-toggle";
  button.setAttribute("aria-controls", body.id);
  button.append(...heading.childNodes);
  heading.append(button);
  // the key on the heading keeps translating the text inside the button
  if (heading.dataset.i18n) {
    button.dataset.i18n = heading.dataset.i18n;
    delete heading.dataset.i18n;
  }
  const collapsed = collapsedPanels();
  setOpen(section, !collapsed.has(name));
  button.addEventListener("click", () => {
    const open = section.classList.contains("collapsed");
    setOpen(section, open);
    const names = collapsedPanels();
    if (open) names.delete(name);
    else names.add(name);
    rememberCollapsed(names);
  });
}

/**
 * @param {HTMLElement} section
 * @param {boolean} open
 */
function setOpen(section, open) {
  section.classList.toggle("collapsed", !open);
  const body = section.querySelector(":scope > .panel-body");
  if (body instanceof HTMLElement) body.hidden = !open;
  section.querySelector(":scope > h2 > .panel-toggle")?.setAttribute("aria-expanded", String(open));
}

/** Place `section` among the panels of #tools by its order. @param {HTMLElement} section */
function place(section) {
  const tools = byId("tools", HTMLElement);
  const after = [...tools.children].find((el) => el instanceof HTMLElement && el !== section && orderOf(el) > orderOf(section));
  tools.insertBefore(section, after ?? null);
}

/**
 * Add a panel to the sidebar (see the notes at the top) and return its body, for its controls.
 * Registering an id twice returns the same body.
 * @param {PanelOptions} options
 * @returns {HTMLElement}
 */
export function registerPanel(options) {
  const { id, title, order, messages, hidden = false } = options;
  if (messages) addMessages(messages);
  let section = document.getElementById(`${id}-panel`);
  if (!section) {
    section = document.createElement("section");
    section.className = "panel";
    section.id = `${id}-panel`;
    section.dataset.panel = id;
    section.hidden = hidden;
    const heading = document.createElement("h2");
    heading.id = `${id}-heading`;
    heading.dataset.i18n = title;
    heading.textContent = t(title);
    section.setAttribute("aria-labelledby", heading.id);
    section.append(heading);
  }
  section.dataset.order = String(order ?? BUILT_IN_ORDER[id] ?? 1000);
  place(section);
  makeCollapsible(section);
  translatePage(section);
  const body = section.querySelector(":scope > .panel-body");
  if (!(body instanceof HTMLElement)) throw new Error(`panel ${id} has no body`);
  return body;
}

/**
 * Open (or close) a panel, as a click on its heading would (remembered only on clicks).
 * @param {string} id
 * @param {boolean} [open]
 */
export function openPanel(id, open = true) {
  const section = document.getElementById(`${id}-panel`);
  if (section) setOpen(section, open);
}

/**
 * Lay the page out: every panel already in #tools becomes collapsible, in its order.
 * Called once by main.js before the tools are installed.
 */
export function setUpWorkspace() {
  const tools = byId("tools", HTMLElement);
  const sections = [...tools.querySelectorAll(":scope > section.panel")].filter((el) => el instanceof HTMLElement);
  sections.forEach((section, i) => {
    const name = panelName(section);
    if (!section.dataset.order) section.dataset.order = String(BUILT_IN_ORDER[name] ?? 100 + i);
  });
  for (const section of sections) {
    place(section);
    makeCollapsible(section);
  }
  // panels that modules add to the sidebar outside #tools join the others
  const sidebar = byId("sidebar", HTMLElement);
  const adopt = (/** @type {Node} */ node) => {
    if (!(node instanceof HTMLElement) || !node.matches("section.panel") || node.id === "feature-panel") return;
    if (!node.dataset.order) node.dataset.order = String(BUILT_IN_ORDER[panelName(node)] ?? 60);
    place(node);
    if (node.querySelector(":scope > h2")) makeCollapsible(node);
  };
  [...sidebar.children].forEach(adopt);
  new MutationObserver((records) => records.forEach((r) => r.addedNodes.forEach(adopt))).observe(sidebar, { childList: true });
  // the toggle names the other language, in that language
  const toggle = byId("language-toggle", HTMLButtonElement);
  toggle.addEventListener("click", () => setLanguage(language() === "en" ? "zh-CN" : "en"));
  const toggleLang = () => (toggle.lang = language() === "en" ? "zh-CN" : "en");
  onLanguageChange(toggleLang);
  toggleLang();
  translatePage();
}
