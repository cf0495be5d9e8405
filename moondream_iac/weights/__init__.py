"""The weights step: a pinned model revision downloaded, locked by sha256 and verified.

Submodules import huggingface_hub lazily, so importing this package stays cheap.
"""
