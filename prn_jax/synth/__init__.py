"""The embedded default data: a procedural face morphable model in the BFM formats, a numpy
renderer, and synthetic 300W-LP / AFLW2000-3D sets in the real layouts (`prn-jax synth`)."""
