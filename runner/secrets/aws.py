"""The AWS Secrets Manager backend: one secret per name under the stack's prefix.

``mlstack secret set aws-dev db-password`` stores ``mlstack/<stack id>/db-password`` in the
stack's region, tagged with the stack's tags so the sweep finds it. A step reads it with its
job role, the CLI with the user's credentials (boto3's standard chain either way). Deletion
skips the recovery window (``ForceDeleteWithoutRecovery``): a removed name can be set again at
once, and ``down`` leaves nothing scheduled behind. Every failure is one line naming the
action and the identity (:mod:`runner.aws_errors`).
"""

from __future__ import annotations

import time
from typing import Any

from runner.aws_clients import aws_client
from runner.aws_errors import aws_errors, error_code
from runner.secrets import SecretsBackend
from stacks.common.errors import UsageError
from stacks.common.fernet import SECRET_NAME_RE
from stacks.outputs import SecretsManagerOutputs, StackOutputs

SERVICE = "secretsmanager"
_SCHEDULED = "scheduled for deletion"  # AWS's words for a name still being deleted
_MARKED = "marked for deletion"


class SecretsManagerSecrets(SecretsBackend):
    """Secrets of one stack in AWS Secrets Manager (names below ``outputs.secrets.prefix``)."""

    runtime_packages = ("boto3",)

    def __init__(self, outputs: StackOutputs) -> None:
        super().__init__(outputs)
        coords = outputs.secrets
        assert isinstance(coords, SecretsManagerOutputs)
        self.prefix, self.region = coords.prefix, coords.region
        with aws_errors(SERVICE, f"connecting to the secrets of stack {outputs.stack!r}"):
            self.client: Any = aws_client(SERVICE, coords.region)

    def _id(self, name: str) -> str:
        if not SECRET_NAME_RE.match(name):
            raise UsageError(f"secret name {name!r} is invalid", "use 1-128 of A-Z a-z 0-9 _ . -")
        return f"{self.prefix}{name}"

    def _what(self, verb: str, name: str) -> str:
        return f"{verb} secret {name!r} of stack {self.outputs.stack!r} ({self.prefix}{name})"

    def get(self, name: str) -> str | None:
        from botocore.exceptions import ClientError

        secret_id = self._id(name)
        with aws_errors(SERVICE, self._what("reading", name)):
            try:
                found = self.client.get_secret_value(SecretId=secret_id)
            except ClientError as err:
                if _absent(err):
                    return None
                raise
        value = found.get("SecretString")
        return str(value) if value is not None else None

    def set(self, name: str, value: str) -> None:
        """Create the secret, or put ``value`` as its new current version."""
        from botocore.exceptions import ClientError

        secret_id = self._id(name)
        with aws_errors(SERVICE, self._what("storing", name)):
            try:
                self.client.put_secret_value(SecretId=secret_id, SecretString=value)
                return
            except ClientError as err:
                if _marked(err):  # deleted with a recovery window (outside mlstack)
                    self.client.restore_secret(SecretId=secret_id)
                    self.client.put_secret_value(SecretId=secret_id, SecretString=value)
                    return
                if error_code(err) != "ResourceNotFoundException":
                    raise
            self._create(secret_id, name, value)

    def _create(self, secret_id: str, name: str, value: str) -> None:
        from botocore.exceptions import ClientError

        tags = [{"Key": k, "Value": v} for k, v in sorted(self.outputs.tags.items())]
        extra: dict[str, Any] = {"Tags": tags} if tags else {}
        description = f"mlstack stack {self.outputs.stack_id}: {name}"
        deadline = time.monotonic() + 30
        while True:
            try:
                self.client.create_secret(
                    Name=secret_id, SecretString=value, Description=description, **extra
                )
                return
            except ClientError as err:
                if error_code(err) == "ResourceExistsException":  # set concurrently
                    self.client.put_secret_value(SecretId=secret_id, SecretString=value)
                    return
                # A forced delete finishes asynchronously: the name frees up within seconds.
                if not _scheduled(err) or time.monotonic() > deadline:
                    raise
                time.sleep(1)

    def delete(self, name: str) -> bool:
        """Remove the secret at once; False when there was none.

        A forced delete succeeds whether or not the secret exists, so it is looked up first.
        """
        from botocore.exceptions import ClientError

        secret_id = self._id(name)
        with aws_errors(SERVICE, self._what("removing", name)):
            try:
                found = self.client.describe_secret(SecretId=secret_id)
            except ClientError as err:
                if error_code(err) == "ResourceNotFoundException":
                    return False
                raise
            self.client.delete_secret(SecretId=secret_id, ForceDeleteWithoutRecovery=True)
        return not found.get("DeletedDate")  # one waiting out a recovery window was gone

    def names(self) -> list[str]:
        """The stack's secret names (its prefix only; never values), sorted."""
        found: list[str] = []
        what = f"listing the secrets of stack {self.outputs.stack!r} ({self.prefix}*)"
        with aws_errors(SERVICE, what):
            pages = self.client.get_paginator("list_secrets").paginate(
                Filters=[{"Key": "name", "Values": [self.prefix]}]
            )
            for page in pages:
                for entry in page.get("SecretList", []):
                    full = str(entry.get("Name", ""))
                    # The name filter matches words too: keep exact prefix matches only.
                    if full.startswith(self.prefix) and not entry.get("DeletedDate"):
                        found.append(full[len(self.prefix) :])
        return sorted(found)


def _absent(err: Exception) -> bool:
    """A secret that does not exist, or is only waiting for its deletion to finish."""
    return error_code(err) == "ResourceNotFoundException" or _marked(err)


def _marked(err: Exception) -> bool:
    text = str(err).lower()
    return error_code(err) == "InvalidRequestException" and _MARKED in text


def _scheduled(err: Exception) -> bool:
    text = str(err).lower()
    return error_code(err) == "InvalidRequestException" and (_SCHEDULED in text or _MARKED in text)
