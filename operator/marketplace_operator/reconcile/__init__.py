"""Pure reconcile decisions: desired vs observed → actions, and the status that follows."""
