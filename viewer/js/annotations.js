// @ts-check
// Annotations (批注): place a pin, a polyline or a polygon on the scene with a note; list the
// city's notes (shared by every viewer: the list is fetched again every POLL_MS and on
// "refresh"), fly to one, edit or delete one's own, export them all as GeoJSON. The server
// (/api/annotations) decides who may change what; each note says whether it is `editable`.
// Points come from the depth buffer (scene.pickPosition, as in measure.js), so they land on
// buildings, terrain or point clouds. A note's text is only ever set as text (textContent, a
// Cesium label), never parsed as HTML. It is a panel registered through js/workspace.js, with
// its messages in ../i18n/annotations.js; its texts follow the language toggle.

/** @import { CityViewer } from "./city-viewer.js" */

import messages from "../i18n/annotations.js";
import { formatDate, onLanguageChange, t } from "./i18n.js";
import { registerPanel } from "./workspace.js";

/** @typedef {"pin" | "polyline" | "polygon"} Kind */

/**
 * A note as the server returns it.
 * @typedef {object} Note
 * @property {number} id
 * @property {Kind} kind
 * @property {number[][]} coordinates  [lon, lat] or [lon, lat, height]
 * @property {string} text
 * @property {string} title
 * @property {string} author
 * @property {string} created
 * @property {string} updated
 * @property {boolean} [editable]
 */

const API = "/api/annotations";
const POLL_MS = 15_000;
const LIST_LIMIT = 200;
const MIN_VERTICES = { pin: 1, polyline: 2, polygon: 3 };
const COLOUR = Cesium.Color.fromCssColorString("#ff7043");
const DRAFT_COLOUR = Cesium.Color.fromCssColorString("#4fc3f7");
const LABEL_BACKGROUND = Cesium.Color.fromCssColorString("#101418").withAlpha(0.8);

/**
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {Record<string, string>} [attrs]
 * @param {string} [text]  set as text, never as HTML
 * @returns {HTMLElementTagNameMap[K]}
 */
function element(tag, attrs = {}, text) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) el.setAttribute(name, value);
  if (text !== undefined) el.textContent = text;
  return el;
}

/** @param {number[]} v */
function toCartesian(v) {
  return Cesium.Cartesian3.fromDegrees(v[0], v[1], v[2] ?? 0);
}

/** @param {CityViewer} viewer */
export function annotationTool(viewer) {
  const body = registerPanel({ id: "annotations", title: "annotations.title", order: 60, messages });
  const panel = /** @type {HTMLElement} */ (body.parentElement);
  const scene = viewer.cesium.scene;
  scene.pickTranslucentDepth = true;
  const source = new Cesium.CustomDataSource("annotations");
  void viewer.cesium.dataSources.add(source);

  // ---------------------------------------------------------------- the panel
  /** @type {Record<Kind, HTMLButtonElement>} */
  const kindButtons = {
    pin: element("button", { type: "button", class: "tool-button", "data-kind": "pin", "aria-pressed": "false" }),
    polyline: element("button", { type: "button", class: "tool-button", "data-kind": "polyline", "aria-pressed": "false" }),
    polygon: element("button", { type: "button", class: "tool-button", "data-kind": "polygon", "aria-pressed": "false" }),
  };
  const tools = element("div", { class: "sun-row annotation-tools" });
  tools.append(kindButtons.pin, kindButtons.polyline, kindButtons.polygon);
  const hint = element("p", { id: "annotation-hint", class: "muted", "aria-live": "polite" });
  const finishButton = element("button", { type: "button", id: "annotation-finish", class: "tool-button" });
  const cancelDrawing = element("button", { type: "button", id: "annotation-cancel-drawing", class: "link-button" });
  const drawRow = element("div", { class: "sun-row", id: "annotation-drawing" });
  drawRow.append(finishButton, cancelDrawing);
  drawRow.hidden = true;

  const form = element("form", { id: "annotation-form", class: "annotation-form" });
  const formHeading = element("p", { id: "annotation-form-heading", class: "muted" });
  const titleInput = element("input", { id: "annotation-title", maxlength: "200" });
  const textInput = element("textarea", { id: "annotation-text", rows: "3", maxlength: "10000" });
  const saveButton = element("button", { type: "submit", id: "annotation-save", class: "tool-button" });
  const cancelForm = element("button", { type: "button", id: "annotation-cancel", class: "link-button" });
  const formRow = element("div", { class: "sun-row" });
  formRow.append(saveButton, cancelForm);
  form.append(formHeading, titleInput, textInput, formRow);
  form.hidden = true;

  const message = element("p", { id: "annotation-message", class: "muted", "aria-live": "polite" });
  const list = element("ol", { id: "annotation-list", class: "annotation-list" });
  const footer = element("div", { class: "sun-row" });
  const totalLabel = element("span", { id: "annotation-total", class: "muted" });
  const refreshButton = element("button", { type: "button", id: "annotation-refresh", class: "link-button" });
  const exportLink = element("a", { id: "annotation-export", class: "link-button", href: `${API}.geojson`, download: "annotations.geojson" });
  footer.append(totalLabel, refreshButton, exportLink);
  body.replaceChildren(tools, hint, drawRow, form, message, list, footer);

  // ---------------------------------------------------------------- state
  /** @type {Note[]} */
  let notes = [];
  let total = 0;
  /** what the list was drawn from: redraw only when it changes */
  let drawnFrom = "";
  /** @type {{ kind: Kind, points: Cesium.Cartesian3[], id: number | null } | null} */
  let draft = null;
  /** @type {Cesium.Entity[]} */
  let draftEntities = [];
  /** @type {{ user: string | null, accounts: boolean, anonymous: boolean }} */
  let me = { user: null, accounts: false, anonymous: true };
  let refreshing = Promise.resolve();
  /** @type {number | undefined} */
  let poller;

  /** the message shown (a key and its values), to show again in another language */
  /** @type {{ key: string, values?: Record<string, unknown> } | null} */
  let said = null;
  /** the drawing hint shown (a key), likewise; the form's heading likewise */
  let hintKey = "";
  /** @type {{ key: string, values?: Record<string, unknown> } | null} */
  let formKey = null;

  /**
   * Show a message from the catalogue (null: none).
   * @param {string | null} key
   * @param {boolean} [error]
   * @param {Record<string, unknown>} [values]
   */
  function say(key, error = false, values) {
    said = key ? { key, values } : null;
    message.textContent = key ? t(key, values) : "";
    message.classList.toggle("error", error);
  }

  /** @param {string} key  "" for none */
  function setHint(key) {
    hintKey = key;
    hint.textContent = key ? t(key) : "";
  }

  /** @param {string} key @param {Record<string, unknown>} [values] */
  function setFormHeading(key, values) {
    formKey = { key, values };
    formHeading.textContent = t(key, values);
  }

  // ---------------------------------------------------------------- drawing

  /** @param {Kind} kind */
  function start(kind) {
    cancel();
    if (me.accounts && !me.user) {
      say("annotations.signIn", true);
      return;
    }
    draft = { kind, points: [], id: null };
    kindButtons[kind].setAttribute("aria-pressed", "true");
    setHint(`annotations.hint.${kind}`);
    drawRow.hidden = kind === "pin";
    finishButton.disabled = true;
    scene.canvas.style.cursor = "crosshair";
    say(null);
  }

  function cancel() {
    draft = null;
    for (const button of Object.values(kindButtons)) button.setAttribute("aria-pressed", "false");
    setHint("");
    drawRow.hidden = true;
    form.hidden = true;
    titleInput.value = "";
    textInput.value = "";
    clearDraftEntities();
    scene.canvas.style.cursor = "";
  }

  function clearDraftEntities() {
    draftEntities.splice(0).forEach((e) => source.entities.remove(e));
    scene.requestRender();
  }

  function drawDraft() {
    clearDraftEntities();
    if (!draft) return;
    const points = draft.points;
    for (const position of points) {
      draftEntities.push(source.entities.add({ position, point: { pixelSize: 9, color: DRAFT_COLOUR, disableDepthTestDistance: Number.POSITIVE_INFINITY } }));
    }
    if (points.length >= 2) {
      const line = draft.kind === "polygon" ? [...points, points[0]] : points;
      draftEntities.push(source.entities.add({ polyline: { positions: line, width: 3, material: DRAFT_COLOUR, depthFailMaterial: DRAFT_COLOUR.withAlpha(0.5) } }));
    }
    scene.requestRender();
  }

  /**
   * The surface point under canvas pixel (x, y), or null.
   * @param {number} x @param {number} y
   */
  function pointAt(x, y) {
    const pixel = new Cesium.Cartesian2(x, y);
    const p = scene.pickPosition(pixel);
    if (Cesium.defined(p)) return p;
    const ray = scene.camera.getPickRay(pixel);
    const q = ray ? scene.globe.pick(ray, scene) : undefined;
    return Cesium.defined(q) ? q : null;
  }

  /**
   * Add the point under canvas pixel (x, y) to the drawing; true if one was found.
   * @param {number} x @param {number} y
   */
  function addPoint(x, y) {
    if (!draft || !form.hidden) return false;
    const p = pointAt(x, y);
    if (!p) {
      say("annotations.missed");
      return false;
    }
    draft.points.push(p);
    drawDraft();
    if (draft.kind === "pin") say(null);
    else say("annotations.points", false, { n: draft.points.length });
    finishButton.disabled = draft.points.length < MIN_VERTICES[draft.kind];
    if (draft.kind === "pin") finish();
    return true;
  }

  /** Stop placing points and ask for the note. */
  function finish() {
    if (!draft || draft.points.length < MIN_VERTICES[draft.kind]) return;
    drawRow.hidden = true;
    setHint("");
    scene.canvas.style.cursor = "";
    setFormHeading(`annotations.kind.${draft.kind}`);
    form.hidden = false;
    textInput.focus();
  }

  /** @param {Cesium.Cartesian3} p */
  function degrees(p) {
    const c = Cesium.Cartographic.fromCartesian(p);
    return [Cesium.Math.toDegrees(c.longitude), Cesium.Math.toDegrees(c.latitude), c.height];
  }

  // ---------------------------------------------------------------- the server

  /**
   * @param {string} url
   * @param {RequestInit} [init]
   * @returns {Promise<any>} the JSON answer; throws an Error carrying the status otherwise
   */
  async function call(url, init) {
    const response = await fetch(url, { cache: "no-store", ...init });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw Object.assign(new Error(String(body.error ?? `HTTP ${response.status}`)), { status: response.status });
    return body;
  }

  /** @param {unknown} error */
  function sayFailure(error) {
    const status = /** @type {{ status?: number }} */ (error).status;
    if (status === 401) say("annotations.signIn", true);
    else if (status === 403) say("annotations.forbidden", true);
    else if (status === 404) say("annotations.gone", true);
    else if (status === 503) say("annotations.readOnly", true);
    else say("annotations.failed", true, { error: error instanceof Error ? error.message : String(error) });
  }

  /** Fetch the notes again; redraw the list and the scene if they changed. */
  function refresh() {
    refreshing = refreshing.then(async () => {
      try {
        const page = await call(`${API}?limit=${LIST_LIMIT}`);
        notes = page.results;
        total = page.total;
        const signature = JSON.stringify(notes.map((n) => [n.id, n.updated, n.editable]));
        if (signature !== drawnFrom) {
          drawnFrom = signature;
          render();
        }
      } catch (error) {
        // a server without the annotations API (a static copy of the city): no panel, no polling
        if (/** @type {{ status?: number }} */ (error).status === 404) stopPolling();
        else sayFailure(error);
      }
    });
    return refreshing;
  }

  /** Save the note being written: a new one (POST) or an edit of one's own (PUT). */
  async function save() {
    if (!draft) return null;
    const text = textInput.value;
    if (!text.trim()) {
      say("annotations.needText", true);
      textInput.focus();
      return null;
    }
    const title = titleInput.value.trim();
    saveButton.disabled = true;
    try {
      /** @type {Note} */
      let note;
      if (draft.id !== null) {
        note = await call(`${API}/${draft.id}`, { method: "PUT", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ text, title }) });
      } else {
        const body = { kind: draft.kind, coordinates: draft.points.map(degrees), text, title };
        note = await call(API, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
      }
      cancel();
      say("annotations.saved");
      await refresh();
      return note;
    } catch (error) {
      sayFailure(error);
      return null;
    } finally {
      saveButton.disabled = false;
    }
  }

  /** @param {number} id */
  async function remove(id) {
    try {
      await call(`${API}/${id}`, { method: "DELETE" });
      if (draft?.id === id) cancel();
      say("annotations.deleted");
      await refresh();
      return true;
    } catch (error) {
      sayFailure(error);
      await refresh();
      return false;
    }
  }

  /** @param {number} id */
  function edit(id) {
    const note = notes.find((n) => n.id === id);
    if (!note) return;
    cancel();
    draft = { kind: note.kind, points: [], id };
    setFormHeading("annotations.editing", { id: String(id) });
    titleInput.value = note.title;
    textInput.value = note.text;
    form.hidden = false;
    textInput.focus();
  }

  // ---------------------------------------------------------------- showing the notes

  /** @param {Note} note */
  function positionsOf(note) {
    return note.coordinates.map(toCartesian);
  }

  /** @param {Note} note */
  function label(note) {
    const text = note.title || note.text.split("\n", 1)[0];
    return text.length > 24 ? `${text.slice(0, 23)}…` : text;
  }

  /** @param {Note} note */
  function addEntity(note) {
    const positions = positionsOf(note);
    const id = `annotation-${note.id}`;
    if (note.kind === "pin") {
      source.entities.add({
        id,
        position: positions[0],
        point: { pixelSize: 12, color: COLOUR, outlineColor: Cesium.Color.WHITE, outlineWidth: 2, disableDepthTestDistance: Number.POSITIVE_INFINITY },
        label: {
          text: label(note),
          font: "13px sans-serif",
          fillColor: Cesium.Color.WHITE,
          showBackground: true,
          backgroundColor: LABEL_BACKGROUND,
          pixelOffset: new Cesium.Cartesian2(0, -20),
          disableDepthTestDistance: Number.POSITIVE_INFINITY,
        },
      });
      return;
    }
    const line = note.kind === "polygon" ? [...positions, positions[0]] : positions;
    source.entities.add({ id, polyline: { positions: line, width: 3, material: COLOUR, depthFailMaterial: COLOUR.withAlpha(0.4) } });
    if (note.kind === "polygon") {
      source.entities.add({
        id: `${id}-fill`,
        polygon: { hierarchy: new Cesium.PolygonHierarchy(positions), perPositionHeight: true, material: COLOUR.withAlpha(0.25) },
      });
    }
  }

  /** @param {string} iso */
  function when(iso) {
    const date = new Date(iso);
    return Number.isNaN(date.getTime()) ? iso : formatDate(date, true);
  }

  /** @param {Note} note */
  function listItem(note) {
    const li = element("li", { class: "annotation-item", "data-id": String(note.id) });
    if (note.editable) li.classList.add("mine");
    const head = element("div", { class: "annotation-head" });
    head.append(element("span", { class: "annotation-kind muted" }, t(`annotations.kind.${note.kind}`)));
    if (note.title) head.append(element("span", { class: "annotation-title" }, note.title));
    const author = note.author === "anonymous" ? t("annotations.anonymous") : note.author;
    const meta = element("div", { class: "annotation-meta muted" }, t(note.editable ? "annotations.metaMine" : "annotations.meta", { author, when: when(note.updated) }));
    const text = element("p", { class: "annotation-text" }, note.text);
    const actions = element("div", { class: "annotation-actions" });
    const fly = element("button", { type: "button", class: "link-button annotation-fly" }, t("annotations.flyTo"));
    fly.addEventListener("click", () => flyTo(note.id));
    actions.append(fly);
    if (note.editable) {
      const editButton = element("button", { type: "button", class: "link-button annotation-edit" }, t("annotations.edit"));
      editButton.addEventListener("click", () => edit(note.id));
      const deleteButton = element("button", { type: "button", class: "link-button annotation-delete" }, t("annotations.delete"));
      // two steps, no confirm(): the second click deletes
      deleteButton.addEventListener("click", () => {
        if (deleteButton.dataset.armed) void remove(note.id);
        else {
          deleteButton.dataset.armed = "1";
          deleteButton.textContent = t("annotations.confirmDelete");
        }
      });
      actions.append(editButton, deleteButton);
    }
    li.append(head, text, meta, actions);
    return li;
  }

  function render() {
    source.entities.suspendEvents();
    for (const entity of [...source.entities.values]) if (!draftEntities.includes(entity)) source.entities.remove(entity);
    for (const note of notes) addEntity(note);
    source.entities.resumeEvents();
    renderList();
    scene.requestRender();
  }

  /** The list of notes, in the language shown. */
  function renderList() {
    list.replaceChildren(...(notes.length ? notes.map(listItem) : [element("li", { class: "muted" }, t("annotations.empty"))]));
    totalLabel.textContent = t("annotations.total", { n: total });
  }

  /**
   * Fly to a note, framing it.
   * @param {number} id
   */
  function flyTo(id) {
    const note = notes.find((n) => n.id === id);
    if (!note) return false;
    for (const li of list.children) li.classList.toggle("selected", li.getAttribute("data-id") === String(id));
    const sphere = Cesium.BoundingSphere.fromPoints(positionsOf(note));
    const range = Math.max(sphere.radius * 3, 150);
    viewer.cesium.camera.flyToBoundingSphere(sphere, {
      offset: new Cesium.HeadingPitchRange(0, Cesium.Math.toRadians(-50), range),
      duration: 1,
      complete: () => viewer.unsettle(),
    });
    viewer.unsettle();
    return true;
  }

  // ---------------------------------------------------------------- texts

  /** Every text of the panel in the language shown (at start and on the language toggle). */
  function translate() {
    for (const [kind, button] of Object.entries(kindButtons)) button.textContent = t(`annotations.kind.${kind}`);
    finishButton.textContent = t("annotations.finish");
    cancelDrawing.textContent = cancelForm.textContent = t("annotations.cancel");
    titleInput.placeholder = t("annotations.titlePlaceholder");
    titleInput.setAttribute("aria-label", titleInput.placeholder);
    textInput.placeholder = t("annotations.textPlaceholder");
    textInput.setAttribute("aria-label", textInput.placeholder);
    saveButton.textContent = t("annotations.save");
    refreshButton.textContent = t("annotations.refresh");
    exportLink.textContent = t("annotations.export");
    hint.textContent = hintKey ? t(hintKey) : "";
    if (formKey) formHeading.textContent = t(formKey.key, formKey.values);
    if (said) message.textContent = t(said.key, said.values);
    renderList();
  }

  // ---------------------------------------------------------------- wiring

  for (const [kind, button] of Object.entries(kindButtons)) {
    button.addEventListener("click", () => {
      if (draft?.kind === kind && draft.id === null) cancel();
      else start(/** @type {Kind} */ (kind));
    });
  }
  finishButton.addEventListener("click", finish);
  cancelDrawing.addEventListener("click", cancel);
  cancelForm.addEventListener("click", cancel);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    void save();
  });
  refreshButton.addEventListener("click", () => void refresh());

  // while drawing, clicks place points instead of selecting
  viewer.on("click", (click) => {
    if (!draft || draft.id !== null || !form.hidden) return;
    click.preventDefault();
    addPoint(click.x, click.y);
  });
  viewer.on("reset", () => {
    cancel();
    say(null);
  });
  onLanguageChange(translate);
  translate();

  void (async () => {
    try {
      const response = await fetch("/api/me", { cache: "no-store" });
      if (response.ok) me = await response.json();
    } catch {
      // the server answers /api/me; a failure here only means writes will say why they fail
    }
    if (me.accounts && !me.user) setHint("annotations.signIn");
    if (me.accounts && !me.anonymous && !me.user) return; // a closed city: nothing to list before signing in
    poller = window.setInterval(() => {
      if (!document.hidden) void refresh();
    }, POLL_MS);
    void refresh();
  })();

  function stopPolling() {
    panel.hidden = true;
    if (poller !== undefined) window.clearInterval(poller);
    poller = undefined;
  }

  return {
    refresh,
    start,
    addPoint,
    finish,
    save,
    cancel,
    edit,
    remove,
    flyTo,
    /** the notes listed now */
    get notes() {
      return notes;
    },
  };
}
