"""Training: the pure train step (`step`), devices and compiled programs (`trainer`), and the
loop with logging and checkpoints (`loop`)."""
