"""Copies a Glance image into a volume."""
