"""hpo: hyperparameter search and benchmarking for the PyTorch MNIST MLP tutorial."""

__version__ = "0.1.0"
