"""Sweep configs: modules with get_config() and get_sweep() (`prn-jax sweep`)."""
