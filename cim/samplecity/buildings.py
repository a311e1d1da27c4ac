"""The sample city's building footprints: blocks along streets on the valley floor, each block
of one typology (courtyard perimeter blocks, residential rows, towers, L-shapes, campuses,
industrial sheds, dense low-rise 'urban villages'), with believable attributes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon

from cim.samplecity.terrain import CENTRE_E, CENTRE_N, valley_centre, valley_half_width

__all__ = [
    "STREET",
    "ROADS_EW",
    "ROADS_NS",
    "ESTATES",
    "STOREY",
    "Footprints",
    "generate_footprints",
    "attributes",
]

BLOCK_W, BLOCK_H = 170.0, 130.0  # block pitch (m), streets included
STREET = 22.0

ROADS_EW = ["Minzhu", "Jiefang", "Renmin", "Dazhong", "Zhongshan", "Chengji", "Longcheng", "Yingbin", "Huancheng", "Binhe"]
ROADS_NS = ["Qinzhou", "Maiji", "Fuxi", "Yuquan", "Nanguo", "Xiguan", "Dongguan", "Shangyi", "Taiyuan", "Wushan"]
ESTATES = ["Yingbin", "Longcheng", "Minzhu", "Renmin", "Jiefang", "Dazhong", "Weibin", "Huaqiao", "Qilin", "Fuxi", "Tianshui", "Jinxiu"]
#: Chinese names of the roads, estates and districts above (the pinyin/English fields keep the Latin ones)
ZH = {
    "Minzhu": "民主",
    "Jiefang": "解放",
    "Renmin": "人民",
    "Dazhong": "大众",
    "Zhongshan": "中山",
    "Chengji": "成纪",
    "Longcheng": "龙城",
    "Yingbin": "迎宾",
    "Huancheng": "环城",
    "Binhe": "滨河",
    "Qinzhou": "秦州",
    "Maiji": "麦积",
    "Fuxi": "伏羲",
    "Yuquan": "玉泉",
    "Nanguo": "南郭",
    "Xiguan": "西关",
    "Dongguan": "东关",
    "Shangyi": "尚义",
    "Taiyuan": "泰源",
    "Wushan": "岷山",
    "Weibin": "渭滨",
    "Huaqiao": "华侨",
    "Qilin": "麒麟",
    "Tianshui": "天水",
    "Jinxiu": "锦绣",
}
#: a building's name in Chinese by use: estate + label + number + suffix (e.g. 迎宾小区3号楼)
LABEL_ZH = {
    "residential": ("小区", "号楼"),
    "commercial": ("广场", "号楼"),
    "mixed": ("大厦", "座"),
    "public": ("服务中心", "号楼"),
    "education": ("学校", "号楼"),
    "industrial": ("工业园", "号厂房"),
}
STOREY = {"residential": 3.0, "commercial": 4.2, "mixed": 3.6, "public": 4.0, "education": 3.9, "industrial": 6.0}


@dataclass
class Footprints:
    geometries: list = field(default_factory=list)
    columns: dict[str, list] = field(default_factory=lambda: {k: [] for k in ("use", "floors", "year_built", "block", "road", "estate")})

    def add(self, geom, use: str, floors: int, year: int, block: tuple[int, int], road: str, estate: str) -> None:
        self.geometries.append(geom)
        for k, v in zip(self.columns, (use, floors, year, block, road, estate)):
            self.columns[k].append(v)


def _rect(cx: float, cy: float, w: float, h: float) -> np.ndarray:
    return np.array([[cx - w / 2, cy - h / 2], [cx + w / 2, cy - h / 2], [cx + w / 2, cy + h / 2], [cx - w / 2, cy + h / 2]])


def _place(ring: np.ndarray, cx: float, cy: float, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    rel = ring
    return np.stack([cx + c * rel[:, 0] - s * rel[:, 1], cy + s * rel[:, 0] + c * rel[:, 1]], 1)


def generate_footprints(xmin: float, ymin: float, xmax: float, ymax: float, seed: int = 0) -> tuple[list, dict[str, np.ndarray]]:
    """Footprints and attributes for every block whose centre lies in the box.

    Blocks sit on a fixed city-wide grid, each decided by its own seeded generator, so a smaller
    preset is exactly a window of the larger city.
    """
    out = Footprints()
    c0 = int(np.floor((xmin - CENTRE_E) / BLOCK_W))
    c1 = int(np.ceil((xmax - CENTRE_E) / BLOCK_W))
    r0 = int(np.floor((ymin - CENTRE_N) / BLOCK_H))
    r1 = int(np.ceil((ymax - CENTRE_N) / BLOCK_H))
    for col in range(c0, c1 + 1):
        bx = CENTRE_E + (col + 0.5) * BLOCK_W
        if not xmin + BLOCK_W / 2 <= bx <= xmax - BLOCK_W / 2:
            continue
        yc = float(valley_centre(np.array(bx)))
        half = float(valley_half_width(np.array(bx)))
        slope = float(valley_centre(np.array(bx + 5.0)) - valley_centre(np.array(bx - 5.0))) / 10.0
        angle = float(np.arctan(slope)) * 0.6
        for row in range(r0, r1 + 1):
            by = CENTRE_N + (row + 0.5) * BLOCK_H
            if not ymin + BLOCK_H / 2 <= by <= ymax - BLOCK_H / 2:
                continue
            _block(out, col, row, bx, by, yc, half, angle, seed)
    cols = {k: np.array(v) for k, v in out.columns.items()}
    return out.geometries, cols


def _block(out: Footprints, col: int, row: int, bx: float, by: float, yc: float, half: float, angle: float, seed: int) -> None:
    rng = np.random.default_rng([seed, col + 100_000, row + 100_000])
    dr = abs(by - yc)
    if dr < 110.0:  # the river and its banks
        return
    edge = dr - half
    if edge > 900.0:
        return
    p_built = 0.97 if edge < 0 else max(0.0, 0.75 - edge / 1200.0)
    dist = np.hypot((bx - CENTRE_E) / 7500.0, (by - CENTRE_N) / 4000.0)
    p_built *= float(np.clip(1.15 - 0.55 * dist, 0.2, 1.0))
    if rng.random() > p_built:
        return
    w, h = BLOCK_W - STREET, BLOCK_H - STREET
    east = (bx - CENTRE_E) / 7500.0
    centrality = float(np.clip(1.0 - dist, 0.0, 1.0))
    if edge > -150:
        kinds, probs = ["village", "rows", "lshape"], [0.88, 0.08, 0.04]
    elif east > 0.55:
        kinds, probs = ["industrial", "village", "rows"], [0.6, 0.25, 0.15]
    else:
        kinds = ["perimeter", "rows", "towers", "lshape", "campus", "village"]
        probs = [0.14 + 0.1 * centrality, 0.28, 0.05 + 0.15 * centrality, 0.1, 0.05, 0.55 - 0.3 * centrality]
    probs = np.array(probs) / np.sum(probs)
    kind = kinds[int(rng.choice(len(kinds), p=probs))]
    road = f"{ROADS_EW[(row + 1000) % len(ROADS_EW)]} Road" if rng.random() < 0.6 else f"{ROADS_NS[(col + 1000) % len(ROADS_NS)]} Road"
    estate = ESTATES[int(rng.integers(len(ESTATES)))]
    era = int(rng.integers(1958, 2024))
    blk = (col, row)

    def add(rings: list[np.ndarray], use: str, floors: int, multi: list[np.ndarray] | None = None) -> None:
        year = int(np.clip(era + rng.integers(-6, 7), 1950, 2025))
        if multi is not None:
            geom = MultiPolygon([Polygon(_place(r, bx, by, angle)) for r in multi])
        else:
            geom = Polygon(_place(rings[0], bx, by, angle), [_place(r, bx, by, angle) for r in rings[1:]])
        out.add(geom, use, int(max(1, floors)), year, blk, road, estate)

    if kind == "perimeter":
        use = "mixed" if rng.random() < 0.5 else "residential"
        d = rng.uniform(12.0, 16.0)
        add([_rect(0, 0, w, h), _rect(0, 0, w - 2 * d, h - 2 * d)[::-1]], use, int(rng.integers(5, 10)))
    elif kind == "rows":
        depth = rng.uniform(11.0, 14.0)
        n_rows = int(h // (depth + rng.uniform(14.0, 22.0)))
        ys = np.linspace(-h / 2 + depth / 2 + 2, h / 2 - depth / 2 - 2, max(1, n_rows))
        tall = rng.random() < 0.35
        for y in ys:
            n_slab = int(rng.integers(2, 4))
            seg = w / n_slab
            for k in range(n_slab):
                length = seg - rng.uniform(6.0, 12.0)
                x = -w / 2 + seg * (k + 0.5)
                floors = int(rng.integers(11, 27)) if tall else int(rng.integers(5, 8))
                add([_rect(x, y, length, depth)], "residential", floors)
    elif kind == "towers":
        for x in (-w / 4, w / 4):
            for y in (-h / 4, h / 4):
                if rng.random() < 0.85:
                    s = rng.uniform(22.0, 32.0)
                    use = "commercial" if rng.random() < 0.6 else "residential"
                    add([_rect(x, y, s, s * rng.uniform(0.8, 1.2))], use, int(rng.integers(18, 34)))
        podium = [_rect(0, 0, w * 0.25, 14.0)]  # between the towers
        add(podium, "commercial", int(rng.integers(2, 5)))
    elif kind == "lshape":
        for sx in (-1, 1):
            a, t = rng.uniform(45.0, 60.0), rng.uniform(12.0, 15.0)
            x0, y0 = sx * w / 4 - a / 2, -a / 2
            ring = np.array([[x0, y0], [x0 + a, y0], [x0 + a, y0 + t], [x0 + t, y0 + t], [x0 + t, y0 + a], [x0, y0 + a]])
            add([ring], "residential" if rng.random() < 0.7 else "commercial", int(rng.integers(4, 13)))
    elif kind == "campus":
        use = "education" if rng.random() < 0.6 else "public"
        wing = [_rect(-w / 4, 0, w / 2 - 16, 16.0), _rect(w / 4, 0, w / 2 - 16, 16.0)]
        add([], use, int(rng.integers(3, 6)), multi=wing)
        add([_rect(0, h / 2 - 14, 30.0, 18.0)], "public", int(rng.integers(2, 4)))
    elif kind == "industrial":
        n = int(rng.integers(2, 5))
        for k in range(n):
            x = -w / 2 + w * (k + 0.5) / n
            add([_rect(x, rng.uniform(-8, 8), w / n - 10, rng.uniform(45.0, h - 20))], "industrial", int(rng.integers(1, 3)))
    else:  # village: dense low-rise houses
        nx, ny = int(rng.integers(10, 15)), int(rng.integers(7, 10))
        gx, gy = w / nx, h / ny
        for i in range(nx):
            for j in range(ny):
                if rng.random() < 0.88:
                    # jitter of at most half the smallest gap: neighbours never overlap
                    x = -w / 2 + gx * (i + 0.5) + rng.uniform(-0.6, 0.6)
                    y = -h / 2 + gy * (j + 0.5) + rng.uniform(-0.6, 0.6)
                    use = "residential" if rng.random() < 0.9 else "commercial"
                    add([_rect(x, y, gx - rng.uniform(2.6, 4.0), gy - rng.uniform(2.6, 4.0))], use, int(rng.integers(1, 4)))


def attributes(geoms: list, cols: dict[str, np.ndarray], xmid: float, seed: int = 0) -> dict[str, np.ndarray]:
    """The published attribute table: id, name (Chinese), name_en (pinyin/English), use, floors,
    height, year_built, address (Chinese), address_en, district (Chinese), district_en."""
    n = len(geoms)
    rng = np.random.default_rng([seed, 7])
    use = cols["use"]
    floors = cols["floors"].astype(np.int32)
    storey = np.array([STOREY[u] for u in use])
    height = np.round(floors * storey + rng.uniform(0.4, 1.8, n), 1)
    centroids = shapely.centroid(np.array(geoms, dtype=object))
    cx = shapely.get_x(centroids)
    district_en = np.where(cx < xmid + 2500.0, "Qinzhou", "Maiji").astype(object)
    district = np.array([f"{ZH[d]}区" for d in district_en], dtype=object)
    ids = np.array([f"TS{i + 1:06d}" for i in range(n)], dtype=object)
    per_estate: dict[tuple, int] = {}
    names = np.empty(n, dtype=object)
    names_en = np.empty(n, dtype=object)
    address = np.empty(n, dtype=object)
    address_en = np.empty(n, dtype=object)
    label = {
        "residential": "Residence",
        "commercial": "Plaza",
        "mixed": "Mansion",
        "public": "Centre",
        "education": "School",
        "industrial": "Works",
    }
    for i in range(n):
        key = (tuple(cols["block"][i]), cols["estate"][i])
        per_estate[key] = per_estate.get(key, 0) + 1
        estate = cols["estate"][i]
        names_en[i] = f"{estate} {label[use[i]]} {per_estate[key]}"
        kind, suffix = LABEL_ZH[use[i]]
        names[i] = f"{ZH[estate]}{kind}{per_estate[key]}{suffix}"
        col, row = key[0]
        number = ((col * 37 + row * 11) % 90) * 2 + 2 * per_estate[key]  # deterministic, unlike hash()
        road = str(cols["road"][i])
        address_en[i] = f"No. {number} {road}, {district_en[i]} District, Tianshui"
        address[i] = f"天水市{district[i]}{ZH[road.removesuffix(' Road')]}路{number}号"
    return {
        "id": ids,
        "name": names,
        "name_en": names_en,
        "use": use.astype(object),
        "floors": floors,
        "height": height.astype(np.float64),
        "year_built": cols["year_built"].astype(np.int32),
        "address": address,
        "address_en": address_en,
        "district": district,
        "district_en": district_en,
    }
