"""The deployment spec: the pydantic schema and the data tables it reads."""

from moondream_iac.spec.schema import DeploySpec, spec_hash

__all__ = ["DeploySpec", "spec_hash"]
