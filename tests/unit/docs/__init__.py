"""Tests of the documentation pages themselves."""
