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
