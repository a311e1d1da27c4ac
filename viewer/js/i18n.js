// @ts-check
// The message catalogue: every string the viewer shows comes from here, in Simplified Chinese
// (the default: the platform's users are planners of a Chinese city) or English, chosen by the
// toggle in the header and remembered in localStorage. The core strings live in
// ../i18n/zh-CN.js and ../i18n/en.js; a panel brings its own messages file
// (`export default { "zh-CN": {...}, en: {...} }`) and adds it with `addMessages`.
//
// Static text in index.html names its key: `data-i18n` (text), `data-i18n-placeholder`,
// `data-i18n-title`, `data-i18n-aria-label`; `translatePage` fills them. Text that tools build
// at run time is re-rendered on `onLanguageChange`. Numbers, dates and times are formatted for
// the language with Intl.

import zhCN from "../i18n/zh-CN.js";
import en from "../i18n/en.js";

/** @typedef {"zh-CN" | "en"} Language */
/** @typedef {Record<string, string>} Messages */
/** @typedef {Partial<Record<Language, Messages>>} MessageBundle */

export const LANGUAGES = /** @type {const} */ (["zh-CN", "en"]);
export const DEFAULT_LANGUAGE = "zh-CN";
const STORAGE_KEY = "cim.language";

/** @type {Record<Language, Messages>} */
const catalogues = { "zh-CN": { ...zhCN }, en: { ...en } };
/** @type {Set<(language: Language) => void>} */
const listeners = new Set();

/** @param {unknown} value @returns {value is Language} */
export function isLanguage(value) {
  return typeof value === "string" && /** @type {readonly string[]} */ (LANGUAGES).includes(value);
}

/** @returns {Language} */
function storedLanguage() {
  try {
    const stored = window.localStorage.getItem(STORAGE_KEY);
    if (isLanguage(stored)) return stored;
  } catch {
    // storage disabled (a private window, say): the default
  }
  return DEFAULT_LANGUAGE;
}

/** @type {Language} */
let current = storedLanguage();

/** The language shown. */
export function language() {
  return current;
}

/**
 * Add a panel's messages to the catalogues (a key already there is replaced).
 * @param {MessageBundle} bundle
 */
export function addMessages(bundle) {
  for (const lang of LANGUAGES) Object.assign(catalogues[lang], bundle[lang] ?? {});
}

/**
 * The message `key` in the current language, with `{name}` placeholders filled from `params`
 * (numbers formatted for the language). A key missing from the language falls back to the
 * other catalogue, then to the key itself, so a gap shows rather than breaks.
 * @param {string} key
 * @param {Record<string, unknown>} [params]
 */
export function t(key, params) {
  const n = params?.n;
  const one = typeof n === "number" && new Intl.PluralRules(current).select(n) === "one" ? catalogues[current][`${key}.one`] : undefined;
  const text = one ?? catalogues[current][key] ?? catalogues[DEFAULT_LANGUAGE][key] ?? catalogues.en[key] ?? key;
  if (!params) return text;
  return text.replace(/\{(\w+)\}/g, (whole, name) => {
    if (!(name in params)) return whole;
    const value = params[name];
    return typeof value === "number" ? formatNumber(value) : String(value);
  });
}

/** Whether a message exists (in any language). @param {string} key */
export function hasMessage(key) {
  return key in catalogues[current] || key in catalogues[DEFAULT_LANGUAGE] || key in catalogues.en;
}

/** A copy of a language's catalogue (tests compare the two). @param {Language} lang */
export function catalogue(lang) {
  return { ...catalogues[lang] };
}

/**
 * A number for the language (grouping, decimal sign). Default: at most `maximumFractionDigits`
 * 3, so that 14.100000000000001 reads 14.1.
 * @param {number} value
 * @param {Intl.NumberFormatOptions} [options]
 */
export function formatNumber(value, options = { maximumFractionDigits: 3 }) {
  if (!Number.isFinite(value)) return String(value);
  return new Intl.NumberFormat(current, options).format(value);
}

/** A date (and time, with `withTime`) for the language. @param {Date | number | string} when @param {boolean} [withTime] */
export function formatDate(when, withTime = false) {
  const date = when instanceof Date ? when : new Date(when);
  /** @type {Intl.DateTimeFormatOptions} */
  const options = withTime ? { dateStyle: "medium", timeStyle: "short" } : { dateStyle: "medium" };
  return new Intl.DateTimeFormat(current, options).format(date);
}

/** A time of day, hours and minutes, 24 h. @param {number} hours @param {number} minutes */
export function formatClock(hours, minutes) {
  const date = new Date(Date.UTC(2000, 0, 1, hours, minutes));
  return new Intl.DateTimeFormat(current, { hour: "2-digit", minute: "2-digit", hourCycle: "h23", timeZone: "UTC" }).format(date);
}

/**
 * Fill the static text of `root` from the catalogue (see the notes at the top).
 * @param {ParentNode} [root]
 */
export function translatePage(root = document) {
  for (const el of root.querySelectorAll("[data-i18n]")) {
    if (el instanceof HTMLElement && el.dataset.i18n) el.textContent = t(el.dataset.i18n);
  }
  for (const [data, attribute] of [
    ["i18nPlaceholder", "placeholder"],
    ["i18nTitle", "title"],
    ["i18nAriaLabel", "aria-label"],
  ]) {
    const selector = `[data-${data.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}]`;
    for (const el of root.querySelectorAll(selector)) {
      const key = el instanceof HTMLElement ? el.dataset[data] : undefined;
      if (key) el.setAttribute(attribute, t(key));
    }
  }
  if (root === document) {
    document.documentElement.lang = current;
  }
}

/**
 * Show the viewer in `lang`, remember it, re-translate the page and tell every listener.
 * @param {Language} lang
 */
export function setLanguage(lang) {
  if (!isLanguage(lang)) throw new Error(`unknown language ${String(lang)} (one of ${LANGUAGES.join(", ")})`);
  current = lang;
  try {
    window.localStorage.setItem(STORAGE_KEY, lang);
  } catch {
    // not remembered; still switched
  }
  translatePage();
  for (const listener of listeners) {
    try {
      listener(lang);
    } catch (error) {
      console.error(error);
    }
  }
}

/**
 * Call `listener` after every language change (tools re-render the text they built).
 * @param {(language: Language) => void} listener
 * @returns {() => void} removes it
 */
export function onLanguageChange(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}
