"""Pick numpy or jax.numpy for a function that accepts either kind of array."""

import jax
import jax.numpy as jnp
import numpy as np


def namespace(*arrays):
    """jax.numpy if any argument is a JAX array (or tracer), else numpy."""
    return jnp if any(isinstance(a, jax.Array) for a in arrays) else np
