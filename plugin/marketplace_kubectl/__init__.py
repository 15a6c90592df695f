"""The `kubectl marketplace` plugin (console script `kubectl-marketplace`)."""
