"""runner.registry_auth without a network: every registry kind has an entry, ECR hosts parse."""

from __future__ import annotations

from typing import get_args

from runner.registry_auth import (
    REGISTRY_AUTHS,
    EcrAuth,
    EcrToken,
    RegistryAuth,
    ecr_region,
    registry_auth,
    registry_auth_for_ref,
)
from stacks.outputs import StackOutputs, load_outputs
from tests.conftest import aws_outputs_data, local_outputs_data


def test_every_registry_kind_of_the_outputs_has_an_auth() -> None:
    union = get_args(StackOutputs.model_fields["container_registry"].annotation)
    kinds = {model.model_fields["kind"].default for model in union}
    assert kinds == set(REGISTRY_AUTHS.kinds())


def test_ecr_hosts_name_their_region_and_registry() -> None:
    host = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
    assert ecr_region(host) == "eu-west-1"
    assert ecr_region("127.0.0.1:5000") is None
    auth = registry_auth_for_ref(f"{host}/mlstack-x:metadata-0.1.0")
    assert isinstance(auth, EcrAuth) and auth.registry_id == "123456789012"
    plain = registry_auth_for_ref("127.0.0.1:5000/mlstack-x:metadata-0.1.0")
    assert type(plain) is RegistryAuth and plain.auth_config() is None and not plain.renew()


def test_the_stack_kind_picks_the_auth() -> None:
    ecr = registry_auth(load_outputs(aws_outputs_data("a")))
    assert isinstance(ecr, EcrAuth) and ecr.region == "eu-west-1"
    local = registry_auth(load_outputs(local_outputs_data("l")))
    assert type(local) is RegistryAuth and local.header() is None


def test_a_token_repr_hides_its_password() -> None:
    assert "hunter2" not in repr(EcrToken("AWS", "hunter2", 0.0))
