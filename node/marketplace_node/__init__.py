"""The marketplace node: one peer of a peer-to-peer package marketplace."""
