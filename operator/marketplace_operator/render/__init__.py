"""Pure builders of the Kubernetes objects the operator owns, as plain dicts (no I/O)."""
