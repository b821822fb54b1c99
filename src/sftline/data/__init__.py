"""Canonical examples, format readers, dataset versions and diffs."""
