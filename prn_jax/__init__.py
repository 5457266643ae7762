"""prn_jax: JAX/Flax PRNet (position-map regression network)."""
