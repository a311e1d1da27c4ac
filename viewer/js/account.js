// @ts-check
// Signing in to a city with accounts (the server's /api/me, /api/login, /api/logout). A city
// without accounts shows nothing of this. The session is an HttpOnly cookie the page never sees:
// signing in or out reloads the page, so city.json and every layer are fetched again as the new
// reader may see them.

import { byId } from "./dom.js";
import { onLanguageChange, t } from "./i18n.js";

/**
 * @typedef {object} Me
 * @property {string | null} user
 * @property {string | null} role
 * @property {boolean} accounts  the city has accounts
 * @property {boolean} anonymous  readers without a login may read its public layers
 */

export function accountTool() {
  const box = byId("account", HTMLElement);
  const who = byId("account-user", HTMLElement);
  const openButton = byId("account-login", HTMLButtonElement);
  const logoutButton = byId("account-logout", HTMLButtonElement);
  const form = byId("login-form", HTMLFormElement);
  const userInput = byId("login-user", HTMLInputElement);
  const passwordInput = byId("login-password", HTMLInputElement);
  const message = byId("login-message", HTMLElement);

  /** @type {Me} */
  let me = { user: null, role: null, accounts: false, anonymous: true };

  /** Ask the server who this page is; show the matching controls. */
  async function check() {
    const response = await fetch("/api/me", { cache: "no-store" });
    if (response.ok) me = await response.json();
    box.hidden = !me.accounts;
    who.textContent = me.user ? t("account.who", { user: me.user, role: me.role ?? "" }) : t("account.notSignedIn");
    openButton.hidden = Boolean(me.user);
    logoutButton.hidden = !me.user;
    form.hidden = Boolean(me.user) || me.anonymous;
    return me;
  }

  /**
   * @param {string} user
   * @param {string} password
   * @returns {Promise<boolean>} whether the server let the user in (the page then reloads)
   */
  async function login(user, password) {
    const response = await fetch("/api/login", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ user, password }),
    });
    if (!response.ok) {
      message.textContent = response.status === 401 ? t("account.wrongPassword") : t("account.failed", { status: String(response.status) });
      message.hidden = false;
      passwordInput.select();
      return false;
    }
    window.location.reload();
    return true;
  }

  async function logout() {
    await fetch("/api/logout", { method: "POST" });
    window.location.reload();
  }

  onLanguageChange(() => {
    who.textContent = me.user ? t("account.who", { user: me.user, role: me.role ?? "" }) : t("account.notSignedIn");
  });
  openButton.addEventListener("click", () => {
    form.hidden = !form.hidden;
    if (!form.hidden) userInput.focus();
  });
  logoutButton.addEventListener("click", () => void logout());
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    void login(userInput.value, passwordInput.value);
  });

  return {
    check,
    login,
    logout,
    /** whether this page may load the city (false: it must sign in first) */
    get mayLoad() {
      return !me.accounts || me.anonymous || Boolean(me.user);
    },
    get me() {
      return me;
    },
  };
}
