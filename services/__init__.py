"""Hoist's four services; each one is a package that never imports another."""
