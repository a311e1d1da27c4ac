"""The API's one description: /api/openapi.json lists every operation the server answers, and the
declared parameters are what the server checks (a bad one is a 400 naming it)."""

import pytest
from aiohttp import web
from multidict import MultiDict

from cim.errors import CimInputError
from cim.server import create_app
from cim.server.openapi import Param, check_value, operation


@pytest.fixture
async def client(aiohttp_client, tiny_city):
    return await aiohttp_client(create_app(tiny_city))


async def test_the_document_lists_every_api_route_and_its_parameters(client):
    resp = await client.get("/api/openapi.json")
    assert resp.status == 200
    doc = await resp.json()
    assert doc["openapi"].startswith("3.1")
    routed = {
        (r.method, r.resource.canonical)
        for r in client.app.router.routes()
        if r.resource is not None and r.resource.canonical.startswith("/api/") and r.method != "HEAD"
    }
    documented = {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}
    assert routed == documented  # nothing routed that is not documented, and the reverse
    search = doc["paths"]["/api/search"]["get"]
    names = {p["name"]: p for p in search["parameters"]}
    assert names.keys() == {"q", "bbox", "limit"}
    assert names["limit"]["schema"]["maximum"] == 200
    assert "400" in search["responses"]
    login = doc["paths"]["/api/login"]["post"]
    assert login["requestBody"]["content"]["application/json"]["schema"]["required"] == ["user", "password"]


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"q": "x", "limit": "many"}, "limit"),
        ({"q": "x", "limit": "0"}, "limit"),
        ({"q": "x", "limit": "100000"}, "limit"),
        ({"bbox": "1,2,3"}, "bbox"),
        ({"bbox": "1,2,nan,4"}, "bbox"),
        ({"q": "x" * 300}, "q"),
        ({"q": "x", "colour": "red"}, "colour"),
    ],
)
async def test_a_bad_parameter_is_a_400_that_names_it(client, params, named):
    resp = await client.get("/api/search", params=params)
    assert resp.status == 400
    assert repr(named) in (await resp.json())["error"]


async def test_a_repeated_parameter_is_refused(client):
    resp = await client.get("/api/search?q=a&q=b")
    assert resp.status == 400 and "'q'" in (await resp.json())["error"]


async def test_declared_operations_parse_typed_values(aiohttp_client):
    @operation(
        "GET",
        "/api/echo",
        summary="echo",
        tag="t",
        params=(
            Param("n", {"type": "integer", "default": 3}),
            Param("flag", {"type": "boolean"}),
            Param("kind", {"type": "string", "enum": ["a", "b"]}, required=True),
        ),
    )
    async def echo(request, params):
        return web.json_response(params)

    app = web.Application()
    app.router.add_route(echo.method, echo.path, echo.route_handler())
    client = await aiohttp_client(app)
    got = await (await client.get("/api/echo", params={"kind": "b", "flag": "true"})).json()
    assert got == {"n": 3, "flag": True, "kind": "b"}
    with pytest.raises(CimInputError, match="'kind' is required"):
        echo.parse(type("R", (), {"query": MultiDict(), "match_info": {}})())


def test_body_checks_name_the_field():
    schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["text"],
        "properties": {"text": {"type": "string", "maxLength": 5}, "n": {"type": "integer"}},
    }
    check_value("body", {"text": "abc", "n": 2}, schema)
    for bad, message in (
        ({}, "body.text is required"),
        ({"text": "abcdefg"}, "body.text is longer"),
        ({"text": "a", "n": 1.5}, "body.n must be integer"),
        ({"text": "a", "n": True}, "body.n must be integer"),
        ({"text": "a", "x": 1}, "body.x is not a known field"),
        ([], "body must be object"),
    ):
        with pytest.raises(CimInputError, match=message):
            check_value("body", bad, schema)
