"""The GitOps core: plan (desired spec vs applied record vs live endpoint), apply, status."""
