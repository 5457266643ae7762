"""Launchers for multi-process training (see launch/README.md)."""
