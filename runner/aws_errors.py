"""AWS failures as one line: which action, which identity, and what to do about it.

Every AWS call the runner makes runs inside :func:`aws_errors`::

    with aws_errors("secretsmanager", f"reading secret {name!r} of stack {stack!r}"):
        client.get_secret_value(SecretId=...)

A denial names the action (``secretsmanager:GetSecretValue``) and the identity AWS saw (or the
``role`` the caller says runs it); bad or expired credentials, none at all, an endpoint that
does not answer and a missing resource each get their own error class and fix. Handlers inside
the block see botocore's errors first (a missing secret may be a normal answer there).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from runner.errors import RunnerError

DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "AuthorizationError"}
BAD_CREDENTIALS = {
    "UnrecognizedClientException",
    "UnrecognizedClient",
    "InvalidClientTokenId",
    "ExpiredToken",
    "ExpiredTokenException",
    "RequestExpired",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
}
MISSING = {
    "ResourceNotFoundException",
    "NoSuchEntity",
    "NoSuchBucket",
    "NoSuchKey",
    "RepositoryNotFoundException",
    "ImageNotFoundException",
}
# Services that answer a missing resource with a generic code (Batch: ClientException,
# SageMaker: ValidationException) say so in the message.
_MISSING_WORDS = re.compile(r"does not exist|could not find|not found", re.IGNORECASE)
CREDENTIALS_HINT = (
    "give mlstack AWS credentials the usual way: AWS_PROFILE (then `aws sso login` if it uses"
    " SSO), AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or the task role inside AWS"
)
_XML_CODE = re.compile(r"<Code>([^<]+)</Code>")
_XML_MESSAGE = re.compile(r"<Message>([^<]*)</Message>")
_IDENTITY = re.compile(r"\b(?:User|identity):\s*(arn:[^\s,]+)", re.IGNORECASE)


class AwsError(RunnerError):
    """An AWS call failed: the headline names the action, the hint the fix."""


class AwsAccessDenied(AwsError):
    """AWS refused the action to the identity that asked (IAM policy)."""


class AwsCredentialsError(AwsError):
    """No usable AWS credentials: none found, unrecognised, or expired."""


class AwsUnreachable(AwsError):
    """The AWS endpoint (or the emulator at AWS_ENDPOINT_URL) does not answer."""


class AwsNotFound(AwsError):
    """The resource the action needs does not exist."""


def _error(err: BaseException) -> tuple[str, str]:
    """(code, message) of a botocore ClientError; ('', str(err)) for anything else.

    A body botocore could not parse for the service's protocol (an XML error where JSON was
    expected, as emulators and proxies send) leaves the HTTP status as the code and the raw
    body as the message: the code and message are read out of the XML then.
    """
    response: Any = getattr(err, "response", None)
    if not isinstance(response, dict):
        return "", str(err)
    error = response.get("Error") or {}
    code, message = str(error.get("Code") or ""), str(error.get("Message") or err)
    if code.isdigit() and "<Code>" in message:
        found = _XML_CODE.search(message)
        code = found.group(1) if found else code
        text = _XML_MESSAGE.search(message)
        message = text.group(1) if text else message
    return code, message


def error_code(err: BaseException) -> str:
    """The AWS error code of a botocore ClientError ('' for anything else)."""
    return _error(err)[0]


def _message(err: BaseException) -> str:
    return " ".join(_error(err)[1].split())[:300]


def _identity(err: BaseException, role: str | None) -> str:
    if role:
        return role
    found = _IDENTITY.search(_message(err))
    return found.group(1) if found else "the current AWS identity (`aws sts get-caller-identity`)"


def translate(
    err: BaseException,
    service: str,
    what: str,
    *,
    role: str | None = None,
    missing_hint: str | None = None,
) -> AwsError | None:
    """The one-line error for a botocore error raised while ``what``; None when not botocore's."""
    from botocore import exceptions as bx

    if isinstance(err, bx.ClientError):
        code = error_code(err)
        action = f"{service}:{err.operation_name}"
        if code in DENIED:
            who = _identity(err, role)
            return AwsAccessDenied(
                f"AWS denied {action} to {who} while {what}",
                f"grant {action} to {who} in its IAM policy; for the stack's own roles,"
                " `mlstack up` restores them",
            )
        if code in BAD_CREDENTIALS:
            return AwsCredentialsError(
                f"AWS rejected the credentials for {action} while {what} ({code})",
                f"refresh them: {CREDENTIALS_HINT}",
            )
        generic = code in ("ClientException", "ValidationException")
        if (
            code in MISSING
            or code.endswith("NotFoundException")
            or code.startswith("NoSuch")
            or (generic and _MISSING_WORDS.search(_message(err)))
        ):
            return AwsNotFound(
                f"{what}: not found in AWS ({action}: {_message(err)})",
                missing_hint or "is the stack up? `mlstack status` shows it, `mlstack up` fixes it",
            )
        return AwsError(f"AWS {action} failed while {what}: {code}: {_message(err)}")
    if isinstance(err, bx.NoCredentialsError | bx.PartialCredentialsError):
        return AwsCredentialsError(
            f"no AWS credentials for {service} while {what}", CREDENTIALS_HINT
        )
    if isinstance(err, bx.NoRegionError):
        return AwsError(
            f"no AWS region for {service} while {what}",
            "set AWS_REGION, or `mlstack up` the stack again so its outputs carry the region",
        )
    if isinstance(err, bx.EndpointConnectionError | bx.ConnectTimeoutError | bx.ReadTimeoutError):
        url = getattr(err, "kwargs", {}).get("endpoint_url") or "its endpoint"
        return AwsUnreachable(
            f"AWS {service} at {url} does not answer while {what}",
            "check the network, or AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_<SERVICE> when using an"
            " emulator",
        )
    if isinstance(err, bx.TokenRetrievalError | bx.SSOError):
        return AwsCredentialsError(
            f"AWS credentials expired for {service} while {what}", CREDENTIALS_HINT
        )
    return None


@contextmanager
def aws_errors(
    service: str, what: str, *, role: str | None = None, missing_hint: str | None = None
) -> Iterator[None]:
    """Turn botocore errors raised in the block into :class:`AwsError` subclasses (one line).

    ``service`` is the IAM prefix (``secretsmanager``, ``ecr``, ``batch``); ``what`` says what
    mlstack was doing ("reading secret 'db' of stack 'aws-dev'"); ``role`` is the role the call
    runs as when the caller knows it better than the error message does.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except (ClientError, BotoCoreError) as err:
        found = translate(err, service, what, role=role, missing_hint=missing_hint)
        if found is None:
            text = " ".join(str(err).split())[:300]
            found = AwsError(f"AWS {service} failed while {what}: {text}")
        raise found from err
