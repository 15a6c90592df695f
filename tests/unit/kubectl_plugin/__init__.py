"""Unit tests of the kubectl plugin's pure logic (no cluster)."""
