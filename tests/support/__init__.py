"""Helpers shared by every test tier: free ports, polling with a deadline, nodes in process
and as real processes, signed documents."""
