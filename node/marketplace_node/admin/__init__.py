"""The node's admin API: the contract between a node and the operator."""
