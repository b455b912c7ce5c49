"""Local secrets backend component: a Fernet-encrypted store with a 0600 key file."""

from __future__ import annotations

from stacks.common.fernet import FernetStore, SecretStoreError
from stacks.local.base import LocalContext, ServiceDef
from stacks.outputs import LocalSecretsOutputs, SecretsOutputs


def store(ctx: LocalContext) -> FernetStore:
    return FernetStore(ctx.path("secrets", "store.enc"), ctx.path("secrets", "key"))


def service(ctx: LocalContext) -> ServiceDef:
    def prepare() -> None:
        FernetStore.create(ctx.path("secrets", "store.enc"), ctx.path("secrets", "key"))

    def check() -> str | None:
        try:
            store(ctx).names()
        except SecretStoreError as exc:
            return str(exc)
        return None

    return ServiceDef(
        name="secrets",
        component="secrets",
        config={"kind": "fernet"},
        prepare=prepare,
        check=check,
    )


def outputs(ctx: LocalContext) -> SecretsOutputs:
    s = store(ctx)
    return LocalSecretsOutputs(path=str(s.path), key_file=str(s.key_file))
