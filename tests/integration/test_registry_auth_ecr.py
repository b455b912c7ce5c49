"""ECR push auth on the real thing: moto's ecr:GetAuthorizationToken, Docker Engine, a registry.

moto's ECR is API-only, so Debian's docker-registry stands in for ECR's registry endpoint:
it accepts exactly the credentials moto's GetAuthorizationToken hands out (htpasswd user
``AWS``, bcrypt of the token's password), as ECR's endpoint accepts its own tokens. The stack's
EcrRegistryOutputs URL points at it. moto's tokens carry ``expiresAt`` 2015-01-01, so the
clock the cache checks against is set on either side of that instant.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import logging
import re
import shutil
import subprocess
import tarfile
import textwrap
import time
import urllib.error
import urllib.request
import uuid
import warnings
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from runner import registry_auth as ra
from runner.aws_clients import aws_client, clear_clients
from runner.base_image import RegistryAuthRefused, push_image, registry_has_tag
from runner.packaging import ensure_image, pipeline_slug
from runner.registry_auth import EcrAuth, EcrToken, registry_auth
from runner.sdk import Pipeline
from stacks.outputs import StackOutputs
from tests.conftest import aws_outputs_data
from tests.integration.test_packaging_docker import (  # noqa: F401 - fixtures
    _free_port,
    base_image,
    engine,
    home,
    make_pipeline,
)

pytestmark = [pytest.mark.docker, pytest.mark.services]

SESSION = uuid.uuid4().hex[:8]
REGION = "us-east-1"
EXPIRES = datetime(2015, 1, 1, tzinfo=UTC).timestamp()  # moto's expiresAt
BEFORE, AFTER = EXPIRES - 3600, EXPIRES + 3600


def _moto_token(moto_server: str, key: str = "testing") -> tuple[str, str]:
    import boto3

    ecr = boto3.client(
        "ecr", region_name=REGION, endpoint_url=moto_server,
        aws_access_key_id=key, aws_secret_access_key="testing",
    )  # fmt: skip
    data = ecr.get_authorization_token()["authorizationData"][0]
    user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    return user, password


def _bcrypt(password: str) -> str:
    """bcrypt, the only scheme the registry's htpasswd reads (libxcrypt through ``crypt``)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt  # removed in Python 3.13: then the bcrypt package
        return str(crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH)))
    except ImportError:
        bcrypt = pytest.importorskip("bcrypt")
        return str(bcrypt.hashpw(password.encode(), bcrypt.gensalt()).decode())


@pytest.fixture(scope="module")
def ecr_registry(tmp_path_factory: pytest.TempPathFactory, moto_server: str) -> Iterator[str]:
    """docker-registry behind htpasswd auth that accepts moto's ECR token; its host:port."""
    with _stand_in_registry(tmp_path_factory, moto_server) as url:
        yield url


@pytest.fixture
def empty_ecr_registry(tmp_path_factory: pytest.TempPathFactory, moto_server: str) -> Iterator[str]:
    """A stand-in registry of its own: its catalog holds only what one test pushed."""
    with _stand_in_registry(tmp_path_factory, moto_server) as url:
        yield url


@contextlib.contextmanager
def _stand_in_registry(tmp_path_factory: pytest.TempPathFactory, moto_server: str) -> Iterator[str]:
    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.skip("docker-registry is not installed (apt-get install docker-registry)")
    user, password = _moto_token(moto_server)
    folder = tmp_path_factory.mktemp("ecr-registry")
    hashed = _bcrypt(password)
    (folder / "htpasswd").write_text(f"{user}:{hashed}\n")
    port = _free_port()
    (folder / "config.yml").write_text(
        textwrap.dedent(
            f"""
            version: 0.1
            log: {{level: info}}
            storage:
              filesystem: {{rootdirectory: {folder / "data"}}}
              delete: {{enabled: true}}
            auth:
              htpasswd: {{realm: ecr-stand-in, path: {folder / "htpasswd"}}}
            http: {{addr: "127.0.0.1:{port}", secret: "{uuid.uuid4().hex}"}}
            """
        )
    )
    log = folder / "registry.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [binary, "serve", str(folder / "config.yml")], stdout=out, stderr=out
        )
    try:
        url = f"127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"http://{url}/v2/", timeout=1).close()
            except urllib.error.HTTPError as err:
                if err.code == 401:  # up, and asking for credentials
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise AssertionError(log.read_text())
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def outputs(aws_env: str, ecr_registry: str) -> StackOutputs:
    """An AWS stack whose ECR registry URL is the stand-in registry."""
    data = aws_outputs_data(f"ecr-{SESSION}", region=REGION)
    data["container_registry"] = {"kind": "ecr", "url": ecr_registry}
    return StackOutputs.model_validate(data)


@pytest.fixture(autouse=True)
def fresh_cache() -> Iterator[None]:
    ra._TOKENS.clear()
    clear_clients()
    yield
    ra._TOKENS.clear()
    clear_clients()


@pytest.fixture
def fetches(aws_env: str) -> Callable[[], int]:
    """How many times GetAuthorizationToken really went to moto (counted on the client)."""
    seen: list[int] = []
    client = aws_client("ecr", REGION)
    client.meta.events.register("after-call.ecr.GetAuthorizationToken", lambda **_: seen.append(1))
    return lambda: len(seen)


def _tiny_image(docker: Any, repository: str, tag: str) -> None:
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        payload = f"mlstack {SESSION} {uuid.uuid4().hex}\n".encode()
        info = tarfile.TarInfo("hello.txt")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    docker.api.import_image_from_data(data.getvalue(), repository=repository, tag=tag)


@pytest.fixture
def image(engine: Any, ecr_registry: str) -> Iterator[tuple[str, str]]:  # noqa: F811
    repository, tag = f"{ecr_registry}/mlstack-auth-{SESSION}/tiny", uuid.uuid4().hex[:10]
    _tiny_image(engine, repository, tag)
    yield repository, tag
    engine.images.remove(f"{repository}:{tag}", force=True)


def _registry_json(host: str, path: str, auth: EcrAuth | Any) -> Any:
    request = urllib.request.Request(f"http://{host}{path}")
    request.add_header("Authorization", auth.header())
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


def _catalog(host: str, auth: Any) -> list[str]:
    """Every repository the registry holds (Registry API ``/v2/_catalog``)."""
    return sorted(_registry_json(host, "/v2/_catalog", auth)["repositories"])


def _tags(host: str, repository: str, auth: Any) -> list[str]:
    return list(_registry_json(host, f"/v2/{repository}/tags/list", auth)["tags"] or [])


def _repo(repository: str) -> str:
    return repository.split("/", 1)[1]


def test_the_registry_refuses_a_push_without_the_token(
    engine: Any,  # noqa: F811
    image: tuple[str, str],
) -> None:
    repository, tag = image
    with pytest.raises(RegistryAuthRefused):
        push_image(engine, repository, tag, None)


def test_push_with_the_ecr_token_then_the_tag_is_found(
    engine: Any,  # noqa: F811
    image: tuple[str, str],
    outputs: StackOutputs,
    ecr_registry: str,
    fetches: Callable[[], int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(EcrAuth, "clock", staticmethod(lambda: BEFORE))
    auth = registry_auth(outputs)
    assert isinstance(auth, EcrAuth) and auth.region == REGION
    repository, tag = image
    assert not registry_has_tag(ecr_registry, _repo(repository), tag, auth=auth)
    digest = push_image(engine, repository, tag, auth)
    assert digest and digest.startswith("sha256:")
    assert registry_has_tag(ecr_registry, _repo(repository), tag, auth=auth)
    assert fetches() == 1  # one token for the lookup, the push and the lookup again


def test_an_expired_token_is_renewed_before_use(
    engine: Any,  # noqa: F811
    image: tuple[str, str],
    outputs: StackOutputs,
    ecr_registry: str,
    fetches: Callable[[], int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = {"now": BEFORE}
    monkeypatch.setattr(EcrAuth, "clock", staticmethod(lambda: clock["now"]))
    auth = registry_auth(outputs)
    first = auth.token()
    assert auth.token() is first and fetches() == 1  # cached while valid
    clock["now"] = AFTER  # the token's expiresAt has passed
    renewed = auth.token()
    assert renewed is not first and fetches() == 2
    # A stale cached token the registry no longer takes, past its expiry: renewed, no 401.
    ra._TOKENS[auth._key] = EcrToken("AWS", "stale-password", EXPIRES - 10)
    repository, tag = image
    assert push_image(engine, repository, tag, auth)
    assert fetches() == 3


def test_a_refused_token_is_renewed_once_on_401(
    engine: Any,  # noqa: F811
    image: tuple[str, str],
    outputs: StackOutputs,
    ecr_registry: str,
    fetches: Callable[[], int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(EcrAuth, "clock", staticmethod(lambda: BEFORE))
    auth = registry_auth(outputs)
    repository, tag = image
    # Still valid by its expiresAt, but revoked: the registry answers 401, the cache renews.
    ra._TOKENS[auth._key] = EcrToken("AWS", "revoked-password", EXPIRES)
    assert not registry_has_tag(ecr_registry, _repo(repository), tag, auth=auth)
    assert fetches() == 1
    ra._TOKENS[auth._key] = EcrToken("AWS", "revoked-password", EXPIRES)
    assert push_image(engine, repository, tag, auth)
    assert fetches() == 2
    assert registry_has_tag(ecr_registry, _repo(repository), tag, auth=auth)


def test_a_token_the_registry_never_takes_is_one_line_without_the_token(
    engine: Any,  # noqa: F811
    image: tuple[str, str],
    outputs: StackOutputs,
    ecr_registry: str,
    aws_env: str,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    import boto3

    # Credentials of another account: moto hands out that account's token, which this
    # registry (the first account's) refuses, before and after renewal.
    sts = boto3.client("sts", region_name=REGION)
    creds = sts.assume_role(
        RoleArn="arn:aws:iam::111111111111:role/other", RoleSessionName="mlstack-test"
    )["Credentials"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", creds["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", creds["SecretAccessKey"])
    monkeypatch.setenv("AWS_SESSION_TOKEN", creds["SessionToken"])
    clear_clients()
    caplog.set_level(logging.DEBUG, logger="runner")
    auth = registry_auth(outputs)
    password = auth.token().password
    assert password.startswith("111111111111")  # really the other account's token
    repository, tag = image
    with pytest.raises(RegistryAuthRefused) as lookup:
        registry_has_tag(ecr_registry, _repo(repository), tag, auth=auth)
    with pytest.raises(RegistryAuthRefused) as push:
        push_image(engine, repository, tag, auth)
    for err in (lookup.value, push.value):
        assert "\n" not in str(err) and "refused" in str(err)
    text = "".join([str(lookup.value), str(push.value), repr(auth.token()), caplog.text])
    out = capfd.readouterr()
    for needle in (password, base64.b64encode(f"AWS:{password}".encode()).decode()):
        assert needle not in text + out.out + out.err


def test_ensure_image_pushes_to_ecr_with_the_token_and_reuses_it(
    engine: Any,  # noqa: F811
    base_image: str,  # noqa: F811
    make_pipeline: Callable[..., Pipeline],  # noqa: F811
    aws_env: str,
    empty_ecr_registry: str,
    fetches: Callable[[], int],
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    ecr_registry = empty_ecr_registry
    data = aws_outputs_data(f"ecr-{SESSION}", region=REGION)
    # As ECR's outputs: the stack's repository URL, a path below the registry host.
    url = f"{ecr_registry}/mlstack-{SESSION}"
    data["container_registry"] = {"kind": "ecr", "url": url}
    data["orchestrator"] = {"kind": "docker", "base_image": base_image}
    data["artifact_store"] = {"kind": "local", "uri": "file:///tmp/unused"}
    outputs = StackOutputs.model_validate(data)
    monkeypatch.setattr(EcrAuth, "clock", staticmethod(lambda: BEFORE))
    pipeline = make_pipeline(f"ecr-{SESSION}", ["six"])
    messages: list[str] = []

    class Progress:
        def update(self, item: str, state: str, detail: str = "") -> None:
            messages.append(f"{item} {state} {detail}")

    first = ensure_image(pipeline, outputs, progress=Progress())  # type: ignore[arg-type]
    try:
        # The stack's one repository, the pipeline in the tag: nothing pushed anywhere else.
        assert re.fullmatch(rf"{pipeline_slug(pipeline.name)}-[0-9a-f]{{20}}", first.tag)
        assert first.image == f"{url}:{first.tag}"
        auth = registry_auth(outputs)
        assert _catalog(ecr_registry, auth) == [f"mlstack-{SESSION}"]
        assert first.tag in _tags(ecr_registry, f"mlstack-{SESSION}", auth)
        second = ensure_image(pipeline, outputs)
        assert not second.built and second.tag == first.tag and second.image == first.image
        assert fetches() == 1
        password = registry_auth(outputs).token().password
        attrs = json.dumps(engine.api.inspect_image(first.image))
        history = json.dumps(engine.api.history(first.image))
        out = capfd.readouterr()
        for blob in (attrs, history, "\n".join(messages), out.out, out.err):
            assert password not in blob
    finally:
        engine.images.remove(first.image, force=True)
