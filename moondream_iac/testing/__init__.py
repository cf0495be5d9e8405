"""Stand-ins for tests and benchmarks: a tiny Moondream-shaped model in Hugging Face format."""

from moondream_iac.testing.tiny_model import write_tiny_model

__all__ = ["write_tiny_model"]
