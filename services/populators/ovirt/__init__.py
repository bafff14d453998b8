"""Copies an oVirt disk through ovirt-imageio into a volume."""
