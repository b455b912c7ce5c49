"""Call a Scheduler universal target the way Scheduler does: the named API with the input.

moto stores schedules but never fires them; this turns ``arn:aws:scheduler:::aws-sdk:
SERVICE:apiAction`` plus its JSON input into the boto3 call, matching each PascalCase input
key to the API's own member name through botocore's service model. A key the API does not
have fails the test (that is how a wrong input would fail in AWS).
"""

from __future__ import annotations

import json
from typing import Any

from botocore import xform_name

BOTO_NAMES = {"elasticloadbalancingv2": "elbv2"}


def _match(value: Any, shape: Any) -> Any:
    if shape.type_name == "structure":
        assert isinstance(value, dict), f"{shape.name} needs an object, got {value!r}"
        members = {name.lower(): name for name in shape.members}
        out = {}
        for key, item in value.items():
            real = members.get(key.lower())
            assert real is not None, (
                f"{key!r} is not a member of {shape.name}: {sorted(shape.members)}"
            )
            out[real] = _match(item, shape.members[real])
        missing = set(shape.required_members) - set(out)
        assert not missing, f"{shape.name} needs {sorted(missing)}"
        return out
    if shape.type_name == "list":
        return [_match(item, shape.member) for item in value]
    return value


def invoke(session: Any, target_arn: str, input_json: str, region: str) -> Any:
    """Make the call the schedule's target names, with its input; return the API's answer."""
    prefix, _, rest = target_arn.partition(":scheduler:::aws-sdk:")
    assert prefix.startswith("arn:") and rest.count(":") == 1, target_arn
    service, action = rest.split(":")
    client = session.client(BOTO_NAMES.get(service, service), region_name=region)
    operation = action[0].upper() + action[1:]
    model = client.meta.service_model.operation_model(operation)
    params = _match(json.loads(input_json), model.input_shape)
    return getattr(client, xform_name(operation))(**params)
