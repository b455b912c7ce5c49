"""Names both the provisioning and the runtime side rely on."""

from __future__ import annotations

# The metadata server's bearer token, as stored in every stack's secrets backend.
TOKEN_SECRET = "mlstack-metadata-token"
# The stack outputs (token included) handed to a step process at run time.
OUTPUTS_ENV = "MLSTACK_STACK_OUTPUTS"
# What a Batch (Fargate) job gets when its step asks for no resources; the cost of a run's
# jobs is accrued with the same figures.
BATCH_DEFAULT_VCPU = 1.0
BATCH_DEFAULT_MEMORY_GIB = 2.0
