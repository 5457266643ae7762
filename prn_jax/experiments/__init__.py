"""Experiments as objects: sweeps of runs and their comparison."""
