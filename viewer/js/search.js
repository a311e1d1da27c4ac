// Feature search: a box in the side panel over the server's /api/search (SQLite FTS5).
// Picking a result flies to the feature and selects it; if another feature is in the way,
// the panel still shows the result's attributes from the index.

const DEBOUNCE_MS = 200;

export function setupSearch({ city, $, api, renderResult }) {
  const panel = $("search-panel");
  if (!city.search) return null;
  panel.hidden = false;
  const input = $("search-input");
  const list = $("search-results");
  let timer = null;
  let generation = 0;

  async function query(text) {
    const url = new URL(city.search.api ?? "/api/search", window.location.href);
    url.searchParams.set("q", text);
    url.searchParams.set("limit", "12");
    const response = await fetch(url);
    if (!response.ok) throw new Error(`search: HTTP ${response.status}`);
    return (await response.json()).results;
  }

  function show(results) {
    const items = results.map((r) => {
      const li = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.className = "search-hit";
      button.dataset.id = r.id;
      const title = document.createElement("span");
      title.className = "hit-title";
      title.textContent = r.title;
      const sub = document.createElement("span");
      sub.className = "hit-sub muted";
      sub.textContent = r.properties?.address ?? r.id;
      button.append(title, sub);
      button.addEventListener("click", () => renderResult(r));
      li.append(button);
      return li;
    });
    if (!items.length) {
      const li = document.createElement("li");
      li.className = "muted";
      li.textContent = "No match";
      items.push(li);
    }
    list.replaceChildren(...items);
  }

  async function run(text) {
    const mine = ++generation;
    if (!text.trim()) {
      list.replaceChildren();
      return [];
    }
    const results = await query(text);
    if (mine === generation) show(results);
    return results;
  }

  input.addEventListener("input", () => {
    window.clearTimeout(timer);
    timer = window.setTimeout(() => run(input.value).catch((e) => api.reportError("Search failed", e)), DEBOUNCE_MS);
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter") list.querySelector("button.search-hit")?.click();
  });
  return { run };
}
