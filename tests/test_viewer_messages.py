"""The viewer's message catalogues, read as files (no browser): both languages hold the same
keys, every key the code or the page names exists, and no text of the page is left outside the
catalogue."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

VIEWER = Path(__file__).resolve().parents[1] / "viewer"
CATALOGUES = {"zh-CN": VIEWER / "i18n" / "zh-CN.js", "en": VIEWER / "i18n" / "en.js"}
_ENTRY = re.compile(r'^\s*"([^"]+)":\s*"((?:[^"\\]|\\.)*)",?\s*$', re.M)
_T_CALL = re.compile(r'\bt\(\s*"([^"]+)"')
_HAN = re.compile(r"[\u4e00-\u9fff]")


def catalogue(lang: str) -> dict[str, str]:
    text = CATALOGUES[lang].read_text(encoding="utf-8")
    entries = _ENTRY.findall(text)
    assert entries, f"{CATALOGUES[lang]} holds no message"
    keys = [k for k, _ in entries]
    assert len(keys) == len(set(keys)), f"{lang}: a key is given twice"
    return dict(entries)


def test_both_languages_hold_the_same_messages() -> None:
    zh, en = catalogue("zh-CN"), catalogue("en")
    # ".one" keys are English plural forms; Chinese has none
    assert set(zh) == {k for k in en if not k.endswith(".one")}
    assert all(k[: -len(".one")] in en for k in en if k.endswith(".one"))
    # the Chinese catalogue is Chinese where it speaks words, the English one is not
    words = [k for k, v in zh.items() if re.search(r"[A-Za-z]{4,}", v) is None and len(v) > 1 and not v.startswith("{")]
    assert sum(bool(_HAN.search(zh[k])) for k in words) >= 0.9 * len(words)
    assert not any(_HAN.search(v) for k, v in en.items() if not k.startswith("language."))
    # the same placeholders in each language
    for key, text in zh.items():
        assert set(re.findall(r"\{(\w+)\}", text)) == set(re.findall(r"\{(\w+)\}", en[key])), key


def panel_bundles() -> dict[str, tuple[dict[str, str], dict[str, str]]]:
    """Each panel's own messages file (``export default { "zh-CN": {...}, en: {...} }``)."""
    out = {}
    for path in sorted((VIEWER / "i18n").glob("*.js")):
        if path in CATALOGUES.values():
            continue
        text = path.read_text(encoding="utf-8")
        zh_part, _, en_part = text.partition("\n  en: {")
        out[path.name] = (dict(_ENTRY.findall(zh_part)), dict(_ENTRY.findall(en_part)))
    return out


def test_each_panel_brings_both_languages() -> None:
    bundles = panel_bundles()
    core = catalogue("zh-CN")
    for name, (zh, en) in bundles.items():
        assert zh and set(zh) == set(en), name
        assert not set(zh) & set(core), f"{name} redefines core messages"
        for key, text in zh.items():
            assert set(re.findall(r"\{(\w+)\}", text)) == set(re.findall(r"\{(\w+)\}", en[key])), key


def test_every_key_the_code_names_is_in_the_catalogues() -> None:
    zh = catalogue("zh-CN")
    for bundle_zh, _ in panel_bundles().values():
        zh |= bundle_zh
    used: set[str] = set()
    for path in [VIEWER / "main.js", *sorted((VIEWER / "js").glob("*.js"))]:
        used |= set(_T_CALL.findall(path.read_text(encoding="utf-8")))
    html = (VIEWER / "index.html").read_text(encoding="utf-8")
    used |= set(re.findall(r'data-i18n(?:-[a-z-]+)?="([^"]+)"', html))
    assert len(used) > 60
    # keys a panel registers through its own messages file are not the core's to hold
    missing = sorted(k for k in used if k not in zh and not k.endswith("...."))
    assert missing == []


class _TextWithoutKey(HTMLParser):
    """Elements of index.html whose own text is not filled from the catalogue."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[tuple[str, bool]] = []
        self.bare: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("meta", "link", "input", "br", "img"):
            return
        self.stack.append((tag, any(name == "data-i18n" for name, _ in attrs)))

    def handle_endtag(self, tag: str) -> None:
        while self.stack and self.stack.pop()[0] != tag:
            pass

    def handle_data(self, data: str) -> None:
        if not data.strip() or not self.stack:
            return
        tag, keyed = self.stack[-1]
        if tag not in ("script", "style", "title") and not keyed:
            self.bare.append(f"<{tag}> {data.strip()!r}")


def test_the_page_has_no_text_outside_the_catalogue() -> None:
    parser = _TextWithoutKey()
    parser.feed((VIEWER / "index.html").read_text(encoding="utf-8"))
    # the measure button's text is the tool's (it changes with the tool's state)
    assert [b for b in parser.bare if "量测距离" not in b] == []


@pytest.mark.parametrize("module", sorted(p.name for p in (VIEWER / "js").glob("*.js")))
def test_no_english_sentence_is_shown_from_code(module: str) -> None:
    """Text a tool puts on the page goes through t(): no textContent, title or label is set
    from an English string literal."""
    source = (VIEWER / "js" / module).read_text(encoding="utf-8")
    shown = re.findall(r'(?:textContent|title|label|placeholder)\s*=\s*[`"]([^`"$]*[A-Za-z]{3,}[^`"]*)[`"]', source)
    assert shown == []


def _code(path: Path) -> str:
    """A module's source without its comments (a comment may speak Chinese; code may not)."""
    source = re.sub(r"/\*.*?\*/", "", path.read_text(encoding="utf-8"), flags=re.S)
    return re.sub(r"(?m)(^|[^:\"'`])//.*$", r"\1", source)


MODULES = sorted(p.name for p in (VIEWER / "js").glob("*.js"))


@pytest.mark.parametrize("module", MODULES)
def test_no_text_of_either_language_is_kept_in_code(module: str) -> None:
    """Every Chinese word lives in a catalogue; no tool keeps its own messages per language or
    its own idea of the language shown (the annotations and analysis panels did)."""
    code = _code(VIEWER / "js" / module)
    assert [line.strip() for line in code.splitlines() if _HAN.search(line)] == []
    if module not in ("i18n.js", "workspace.js"):
        assert '"zh-CN"' not in code and "'zh-CN'" not in code, "the language is i18n.js's: language(), onLanguageChange()"
        assert 'localStorage.getItem("cim.lang' not in code


@pytest.mark.parametrize("module", MODULES)
def test_numbers_and_dates_are_formatted_for_the_language(module: str) -> None:
    """Text shows numbers and dates through i18n.js's Intl helpers, never toLocale*() with a
    language of its own or a bare toFixed() (toFixed stays for URLs and shader source)."""
    code = _code(VIEWER / "js" / module)
    assert re.findall(r"\.toLocale\w*\(", code) == []
    shown = re.findall(r"(?:textContent|(?<![\w.])t\([^)]*)[^;\n]*\.toFixed\(", code)
    assert shown == []


def test_every_key_prefix_a_template_names_has_messages() -> None:
    """``t(`analysis.kind.${kind}`)``: some message starts with each prefix built at run time."""
    keys = set(catalogue("zh-CN"))
    for bundle_zh, _ in panel_bundles().values():
        keys |= set(bundle_zh)
    prefixes: set[str] = set()
    for path in [VIEWER / "main.js", *sorted((VIEWER / "js").glob("*.js"))]:
        prefixes |= set(re.findall(r"\bt\(\s*`([^`$]+)\$\{", path.read_text(encoding="utf-8")))
    assert {"analysis.kind.", "annotations.kind.", "query.draw."} <= prefixes
    assert sorted(p for p in prefixes if not any(k.startswith(p) for k in keys)) == []


def test_every_panel_messages_file_is_registered() -> None:
    """Each messages file of viewer/i18n/ is imported by the module of its panel and handed to
    registerPanel (or addMessages); its keys are the panel's own (``NAME.``)."""
    sources = {p.name: p.read_text(encoding="utf-8") for p in (VIEWER / "js").glob("*.js")}
    for name in panel_bundles():
        importers = [m for m, s in sources.items() if re.search(rf'import (\w+) from "\.\./i18n/{re.escape(name)}"', s)]
        assert importers, f"no module imports i18n/{name}"
        for module in importers:
            var = re.search(rf'import (\w+) from "\.\./i18n/{re.escape(name)}"', sources[module])
            assert var and re.search(rf"(registerPanel\(\{{[^}}]*\b{var[1]}\b|addMessages\({var[1]}\))", sources[module]), module
    for name in ("annotations.js", "analysis.js"):
        zh, en = panel_bundles()[name]
        prefix = name.removesuffix(".js") + "."
        assert all(k.startswith(prefix) for k in zh), name
        # the Chinese messages are Chinese, the English ones are not
        assert all(_HAN.search(v) for k, v in zh.items() if re.search(r"[A-Za-z]{4,}", v) is None and len(v) > 3)
        assert not any(_HAN.search(v) for v in en.values()), name
