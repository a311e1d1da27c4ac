"""``cim users``, ``cim access`` and ``cim audit``: who may read a served city, and the trail.

Examples::

    cim users add tiles/tianshui wang --role planner          # asks for a password
    cim users add tiles/tianshui etl --role admin --token     # a script's account: prints a token
    cim access restrict tiles/tianshui bim --role planner
    cim users revoke tiles/tianshui wang
    cim audit show tiles/tianshui --user wang --since 2026-12-01
    cim audit verify tiles/tianshui
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from cim.cli.options import EXIT_INPUT, common, console, handle_errors, setup_logging

__all__ = ["access", "audit", "users"]

CITY = click.argument("city_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))


@click.group()
def users() -> None:
    """Accounts of a served city: add, list, revoke, new tokens, passwords."""


@users.command("add")
@CITY
@click.argument("name")
@click.option("--role", required=True, help="The user's role (admin reads every layer).")
@click.option("--password/--no-password", default=True, show_default=True, help="Ask for a password (the viewer's login).")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input (scripts).")
@click.option("--token", "with_token", is_flag=True, help="Also print a new API token (shown once).")
@common
@handle_errors
def users_add(
    city_dir: Path, name: str, role: str, password: bool, password_stdin: bool, with_token: bool, verbose: int, quiet: bool
) -> None:
    """Add user NAME to the city in CITY_DIR."""
    from cim.access import AccessControl

    setup_logging(verbose, quiet)
    secret = _read_password(password_stdin) if (password or password_stdin) else None
    acl = AccessControl.open(city_dir, create=True)
    acl.add_user(name, role=role, password=secret)
    console.print(f"added {name} ({role})")
    if with_token:
        click.echo(acl.new_token(name))


@users.command("token")
@CITY
@click.argument("name")
@click.option("--label", default="", help="What the token is for (shown in the list).")
@handle_errors
def users_token(city_dir: Path, name: str, label: str) -> None:
    """Print a new API token for NAME (only its hash is kept: copy it now)."""
    from cim.access import AccessControl

    click.echo(AccessControl.open(city_dir).new_token(name, label))


@users.command("password")
@CITY
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@handle_errors
def users_password(city_dir: Path, name: str, password_stdin: bool) -> None:
    """Set NAME's password (their open sessions end)."""
    from cim.access import AccessControl

    AccessControl.open(city_dir).set_password(name, _read_password(password_stdin))
    console.print(f"password of {name} changed")


@users.command("list")
@CITY
@click.option("--json", "as_json", is_flag=True, help="JSON lines instead of a table.")
@handle_errors
def users_list(city_dir: Path, as_json: bool) -> None:
    """List the users of CITY_DIR."""
    from cim.access import AccessControl

    rows = AccessControl.open(city_dir).users()
    if as_json:
        for u in rows:
            click.echo(json.dumps({"name": u.name, "role": u.role, "active": u.active, "password": u.has_password, "tokens": u.tokens}))
        return
    from rich.table import Table

    table = Table("user", "role", "state", "password", "tokens", "created (UTC)")
    for u in rows:
        created = datetime.fromtimestamp(u.created, UTC).strftime("%Y-%m-%d %H:%M")
        table.add_row(u.name, u.role, "active" if u.active else "revoked", "yes" if u.has_password else "no", str(u.tokens), created)
    console.print(table)


@users.command("revoke")
@CITY
@click.argument("name")
@handle_errors
def users_revoke(city_dir: Path, name: str) -> None:
    """Disable NAME: tokens deleted, sessions ended (a running server sees it at once)."""
    from cim.access import AccessControl

    n = AccessControl.open(city_dir).revoke(name)
    console.print(f"revoked {name} ({n} token(s) deleted)")


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return str(click.prompt("password", hide_input=True, confirmation_prompt=True))


@click.group()
def access() -> None:
    """Which roles may read which layers of a served city."""


@access.command("restrict")
@CITY
@click.argument("layer")
@click.option("--role", "roles", multiple=True, required=True, help="A role that may read LAYER (repeat for more; admin always may).")
@handle_errors
def access_restrict(city_dir: Path, layer: str, roles: tuple[str, ...]) -> None:
    """Let only the given roles read LAYER (its tiles, search results and place in city.json)."""
    from cim.access import AccessControl

    known = {str(entry.get("id")) for entry in json.loads((city_dir / "city.json").read_text("utf-8")).get("layers", [])}
    if layer not in known:
        raise click.BadParameter(f"no layer {layer!r} in {city_dir / 'city.json'} (layers: {', '.join(sorted(known))})", param_hint="LAYER")
    AccessControl.open(city_dir, create=True).restrict(layer, roles)
    console.print(f"{layer}: readable by {', '.join(sorted({*roles, 'admin'}))}")


@access.command("public")
@CITY
@click.argument("layer")
@handle_errors
def access_public(city_dir: Path, layer: str) -> None:
    """Make LAYER readable by anyone who may read the city."""
    from cim.access import AccessControl

    was = AccessControl.open(city_dir).make_public(layer)
    console.print(f"{layer}: public" + ("" if was else " (it was)"))


@access.command("anonymous")
@CITY
@click.argument("state", type=click.Choice(["on", "off"]))
@handle_errors
def access_anonymous(city_dir: Path, state: str) -> None:
    """Whether readers without a login may read the public layers."""
    from cim.access import AccessControl

    AccessControl.open(city_dir, create=True).set_anonymous(state == "on")
    console.print(f"anonymous reading {state}")


@access.command("show")
@CITY
@handle_errors
def access_show(city_dir: Path) -> None:
    """Print the layers, who may read each, and whether anonymous readers are let in."""
    from cim.access import AccessControl

    acl = AccessControl.load(city_dir)
    layers = [str(entry.get("id")) for entry in json.loads((city_dir / "city.json").read_text("utf-8")).get("layers", [])]
    restricted = acl.restricted if acl else {}
    for layer in layers:
        roles = restricted.get(layer)
        click.echo(f"{layer}: " + ("public" if roles is None else "roles " + ", ".join(sorted({*roles, "admin"}))))
    click.echo(f"anonymous reading: {'on' if acl is None or acl.anonymous_allowed else 'off'}")


@click.group()
def audit() -> None:
    """The audit trail of a served city (CITY_DIR/.cim/audit.jsonl)."""


@audit.command("show")
@CITY
@click.option("--user", help="Only this user ('anonymous' for readers without a login).")
@click.option("--action", help="Only this action (login, read, read-denied, search, ...).")
@click.option("--since", help="From this time (ISO 8601, UTC unless it says otherwise).")
@click.option("--until", help="Before this time.")
@click.option("--path", help="Only records of this path (e.g. /city/bim/tileset.json), read records listing it included.")
@click.option("--json", "as_json", is_flag=True, help="The records as JSON lines.")
@handle_errors
def audit_show(
    city_dir: Path, user: str | None, action: str | None, since: str | None, until: str | None, path: str | None, as_json: bool
) -> None:
    """Print the records matching every filter given."""
    from cim.audit import AuditLog, parse_time

    records = AuditLog(city_dir).show(
        user=user, action=action, since=parse_time(since) if since else None, until=parse_time(until) if until else None, path=path
    )
    for r in records:
        if as_json:
            click.echo(json.dumps(r, ensure_ascii=False))
        else:
            detail = json.dumps(r.get("detail") or {}, ensure_ascii=False)
            click.echo(
                f"{r['seq']:>7} {r['time']} {r['user']:<12} {r['action']:<12} {r.get('status')} {r.get('remote')} {r.get('target')} {detail}"
            )


@audit.command("verify")
@CITY
@handle_errors
def audit_verify(city_dir: Path) -> None:
    """Check the chain of the trail: name every edited, deleted or reordered record (exit 1 if any)."""
    from cim.audit import AuditLog

    result = AuditLog(city_dir).verify()
    for problem in result.problems:
        console.print(f"[bold red]{problem}[/]", highlight=False, soft_wrap=True)
    if result.ok:
        console.print(f"{result.path}: {result.records} records, chain intact")
        return
    console.print(f"{result.path}: {len(result.problems)} problem(s) in {result.records} records", highlight=False)
    sys.exit(EXIT_INPUT)
