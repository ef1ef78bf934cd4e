"""cifarcli: the one-layer softmax network on CIFAR-10, end to end."""

__version__ = "0.1.0"
