// BIM tools: filter a BIM layer's elements by IFC class and storey (a 3D Tiles style on the
// element metadata) and cut into the buildings with a horizontal clipping plane.

const Cesium = window.Cesium;

function quote(s) {
  return `'${String(s).replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`;
}

export function setupBim({ layer, tileset, origin, $, onChange }) {
  const panel = $("bim-panel");
  panel.hidden = false;
  const classes = layer.classes ?? [];
  const storeys = layer.storey_names ?? [];
  const classBox = $("bim-classes");
  const storeySelect = $("bim-storey");
  const cut = $("bim-cut");
  const cutHeight = $("bim-cut-height");
  const cutLabel = $("bim-cut-label");
  const hidden = new Set();

  classBox.replaceChildren(
    ...classes.map((name) => {
      const label = document.createElement("label");
      label.className = "inline chip";
      const box = document.createElement("input");
      box.type = "checkbox";
      box.checked = true;
      box.dataset.ifcClass = name;
      box.addEventListener("change", () => {
        if (box.checked) hidden.delete(name);
        else hidden.add(name);
        applyStyle();
      });
      label.append(box, document.createTextNode(name.replace(/^Ifc/, "")));
      return label;
    }),
  );
  storeySelect.replaceChildren(
    new Option("All storeys", ""),
    ...storeys.map((name) => new Option(name, name)),
  );
  storeySelect.addEventListener("change", applyStyle);

  function applyStyle() {
    const terms = [];
    if (hidden.size) terms.push(`!(${[...hidden].map((c) => `\${IfcClass} === ${quote(c)}`).join(" || ")})`);
    if (storeySelect.value) terms.push(`\${Storey} === ${quote(storeySelect.value)}`);
    tileset.style = terms.length ? new Cesium.Cesium3DTileStyle({ show: terms.join(" && ") }) : undefined;
    onChange?.();
  }

  // heights are relative to the city origin (the root transform's frame, z up)
  const b = layer.bounds ?? {};
  const lo = (b.min_height ?? 0) - (origin?.height ?? 0);
  const hi = (b.max_height ?? lo + 10) - (origin?.height ?? 0);
  cutHeight.min = String(Math.floor(lo));
  cutHeight.max = String(Math.ceil(hi));
  cutHeight.step = "0.1";
  cutHeight.value = String((lo + hi) / 2);
  const plane = new Cesium.ClippingPlane(new Cesium.Cartesian3(0, 0, -1), 0);
  tileset.clippingPlanes = new Cesium.ClippingPlaneCollection({
    planes: [plane],
    enabled: false,
    edgeWidth: 1.5,
    edgeColor: Cesium.Color.fromCssColorString("#f2b33d"),
  });

  function applyCut() {
    const h = Number(cutHeight.value);
    plane.distance = h; // keeps -z + h >= 0: everything below the cut
    tileset.clippingPlanes.enabled = cut.checked;
    cutLabel.textContent = cut.checked ? `cut at ${(h + (origin?.height ?? 0)).toFixed(1)} m` : "";
    onChange?.();
  }
  cut.addEventListener("change", applyCut);
  cutHeight.addEventListener("input", applyCut);
  applyCut();

  return {
    setClassVisible(name, visible) {
      const box = classBox.querySelector(`input[data-ifc-class="${CSS.escape(name)}"]`);
      if (!box) return false;
      box.checked = visible;
      box.dispatchEvent(new Event("change"));
      return true;
    },
    setStorey(name) {
      storeySelect.value = name ?? "";
      applyStyle();
    },
    setCut(enabled, absoluteHeight) {
      cut.checked = Boolean(enabled);
      if (Number.isFinite(absoluteHeight)) cutHeight.value = String(absoluteHeight - (origin?.height ?? 0));
      applyCut();
    },
  };
}
