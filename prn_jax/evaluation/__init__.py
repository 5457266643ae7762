"""Evaluation: metrics (`metrics`), the AFLW2000-3D protocol (`protocol`), the mean-face
baseline (`baseline`), Table-1 and CED outputs (`report`), periodic evaluation during training
(`periodic`) and a run's evaluation end to end (`run`). Evaluators are handed predict functions;
they never import the trainer."""
