"""`chief chat` (the Chainlit app) and `chief user add|list` (chat users with passwords)."""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
from pathlib import Path

import click

from ..core.errors import ChiefError
from .common import EXIT_OK, console, err_console, open_store, run_async
from .main import cli


def is_loopback(host: str) -> bool:
    """Whether `host` only listens on this machine (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return all(ipaddress.ip_address(info[4][0]).is_loopback for info in socket.getaddrinfo(host, None))
        except OSError:
            return False


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to listen on.")
@click.option("--auth/--no-auth", default=None,
              help="Ask for a password (users from `chief user add`). Default: off on 127.0.0.1, "
                   "required on any other address.")
def chat(host: str, port: int, auth: bool | None) -> None:
    """Start the chat (Chainlit) on http://HOST:PORT with the configured (or embedded) services."""
    loopback = is_loopback(host)
    if auth is None:
        auth = not loopback
    if not auth and not loopback:
        err_console.print(f"[red]error:[/red] --no-auth is only allowed on a loopback address, not {host}: "
                          "create users with `chief user add NAME`", markup=True)
        sys.exit(2)
    from ..chat_app.runtime import auth_secret, prepare_app_root
    from ..core.config import Settings

    settings = Settings()
    prepare_app_root(settings)  # before chainlit is imported: it writes into its app folder
    os.environ["CHIEF_CHAT_AUTH"] = "1" if auth else "0"
    if auth:
        os.environ["CHAINLIT_AUTH_SECRET"] = auth_secret(settings)
    os.environ.pop("CI", None)  # Chainlit's own --ci mode must not change what users get
    app = Path(__file__).resolve().parents[1] / "chat_app" / "app.py"
    console.print(f"Chief chat on http://{host}:{port} (auth {'on' if auth else 'off'}; data in {settings.home})")
    from chainlit.cli import cli as chainlit_cli

    chainlit_cli.main(["run", str(app), "--headless", "--host", host, "--port", str(port)],
                      prog_name="chief chat", standalone_mode=True)


@cli.group()
def user() -> None:
    """Chat users (password sign-in)."""


@user.command("add")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input (for scripts).")
@click.option("--reset", is_flag=True, help="Set a new password for an existing user.")
@run_async
async def user_add(name: str, password_stdin: bool, reset: bool) -> int:
    """Create chat user NAME (asks for a password)."""
    from ..core.store.chat import ChatStore

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(password) < 8:
        raise ChiefError("the password must have at least 8 characters")
    async with open_store() as store:
        record = await ChatStore(store).add_user(name, password, replace_password=reset)
    console.print(f"user {record.identifier} {'updated' if reset else 'added'}")
    return EXIT_OK


@user.command("list")
@run_async
async def user_list() -> int:
    """List chat users."""
    from sqlalchemy import select

    from ..core.store.models import users

    async with open_store() as store:
        rows = await store._call("listing users",
                                 lambda conn: conn.execute(select(users.c.identifier, users.c.created_at)
                                                           .order_by(users.c.identifier)).all(), write=False)
    for identifier, created in rows:
        console.print(f"{identifier}\t{created:%Y-%m-%d %H:%M}")
    return EXIT_OK
