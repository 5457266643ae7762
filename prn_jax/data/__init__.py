"""Data: source-file formats (`formats`), the tfds build (`build`), the training input pipeline
(`input_pipeline`), procedural batches (`generated`), the training data switch (`train_data`),
evaluation examples (`eval_data`) and the augmented-batch viewer (`show_batch`)."""
