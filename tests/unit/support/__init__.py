"""Tests of the helpers the test tiers share."""
