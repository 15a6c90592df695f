"""Fleet policy: effective policy, versions, automatic bans, coalescing and propagation."""
