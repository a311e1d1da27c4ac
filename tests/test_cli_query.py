"""``cim query``: the API's results on the command line (same bytes), GeoJSON polygons, errors."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from cim.cli.main import cli
from cim.server import create_app

RING = [[105.7033, 34.5776], [105.7058, 34.5778], [105.7045, 34.5801], [105.7033, 34.5776]]


async def test_cli_writes_what_the_api_answers(aiohttp_client, tiny_city, tmp_path):
    client = await aiohttp_client(create_app(tiny_city))
    runner = CliRunner()
    for fmt in ("csv", "geojson", "json"):
        out = tmp_path / f"q.{fmt}"
        args = ["query", str(tiny_city), "--text", "秦州", "--where", "floors >= 2", "--format", fmt, "--limit", "30", "--out", str(out)]
        done = runner.invoke(cli, args)
        assert done.exit_code == 0, done.output
        resp = await client.get("/api/query", params={"text": "秦州", "where": "floors >= 2", "format": fmt, "limit": "30"})
        assert out.read_bytes() == await resp.read()
    assert (tmp_path / "q.csv").read_bytes().startswith(b"\xef\xbb\xbf")


async def test_cli_polygon_file_and_stats_match_the_api(aiohttp_client, tiny_city, tmp_path):
    client = await aiohttp_client(create_app(tiny_city))
    plan = tmp_path / "plan.geojson"
    plan.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [{"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [RING]}}],
            }
        )
    )
    runner = CliRunner()
    done = runner.invoke(cli, ["query", str(tiny_city), "--polygon", str(plan), "--stats", "--group-by", "use"])
    assert done.exit_code == 0, done.output
    flat = ",".join(str(c) for xy in RING for c in xy)
    resp = await client.get("/api/stats", params={"polygon": flat, "group_by": "use"})
    assert json.loads(done.stdout) == await resp.json()
    assert json.loads(done.stdout)["count"] > 3


@pytest.mark.parametrize(
    "args, words",
    [
        (["--where", "height >"], ["where", "expected a value"]),
        (["--where", "colour = 'red'"], ["unknown attribute", "colour"]),
        (["--bbox", "1,2,3"], ["--bbox", "4"]),
        (["--group-by", "use"], ["--group-by", "--stats"]),
    ],
)
def test_cli_errors_are_one_line_not_a_traceback(tiny_city, args, words):
    done = CliRunner().invoke(cli, ["query", str(tiny_city), *args])
    assert done.exit_code != 0 and "Traceback" not in done.output
    for word in words:
        assert word in done.output, done.output


def test_cli_polygon_file_without_one_polygon_is_named(tiny_city, tmp_path):
    bad = tmp_path / "points.geojson"
    bad.write_text(json.dumps({"type": "Point", "coordinates": [105.7, 34.57]}))
    done = CliRunner().invoke(cli, ["query", str(tiny_city), "--polygon", str(bad)])
    assert done.exit_code != 0 and "points.geojson" in done.output and "exactly one polygon" in done.output
