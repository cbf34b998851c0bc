"""Training side of maskdepth: data, model zoo, losses and the loop (PyTorch)."""
