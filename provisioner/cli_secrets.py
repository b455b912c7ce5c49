"""``mlstack secret``: set, get, list and remove secrets in a stack's secrets backend."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from stacks.common.errors import SecretsError, UsageError

if TYPE_CHECKING:
    from runner.secrets import SecretsBackend


def _store(name: str) -> SecretsBackend:
    """The stack's secrets backend client, whatever its kind (looked up in its registry)."""
    from provisioner import api
    from runner.secrets import secrets_backend

    return secrets_backend(api.outputs(name))


@click.group()
def secret() -> None:
    """Manage secrets in a stack's secrets backend (values are encrypted at rest)."""


@secret.command("set")
@click.argument("stack")
@click.argument("key")
@click.argument("value", required=False)
def set_(stack: str, key: str, value: str | None) -> None:
    """Store KEY. Without VALUE it is read from stdin (or prompted for, hidden)."""
    if value is None:
        if sys.stdin.isatty():
            value = click.prompt(f"value for {key}", hide_input=True, confirmation_prompt=True)
        else:
            value = sys.stdin.read().rstrip("\n")
    if not value:
        raise UsageError(f"secret {key!r}: empty value", "pass a value or pipe it on stdin")
    _store(stack).set(key, value)
    click.echo(f"secret {key} set in stack {stack}")


@secret.command("get")
@click.argument("stack")
@click.argument("key")
@click.option("--show-secrets", is_flag=True, help="Print the value itself.")
def get(stack: str, key: str, show_secrets: bool) -> None:
    """Show whether KEY exists; print its value only with --show-secrets."""
    value = _store(stack).get(key)
    if value is None:
        raise SecretsError(
            f"secret {key!r} not found in stack {stack}", "see `mlstack secret list`"
        )
    if show_secrets:
        click.echo(value)
    else:
        click.echo(f"{key}: ******** ({len(value)} characters; --show-secrets prints it)")


@secret.command("list")
@click.argument("stack")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_(stack: str, as_json: bool) -> None:
    """List secret names (never values)."""
    names = _store(stack).names()
    if as_json:
        from provisioner.render import print_json

        print_json(names)
        return
    for name in names:
        click.echo(name)
    if not names:
        click.echo(f"no secrets in stack {stack}")


@secret.command("rm")
@click.argument("stack")
@click.argument("key")
def rm(stack: str, key: str) -> None:
    """Remove KEY."""
    if not _store(stack).delete(key):
        raise SecretsError(
            f"secret {key!r} not found in stack {stack}", "see `mlstack secret list`"
        )
    click.echo(f"secret {key} removed from stack {stack}")
