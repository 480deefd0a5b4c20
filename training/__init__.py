"""Training our own small model family: procedural data, pixel measurements, and the training scripts."""
