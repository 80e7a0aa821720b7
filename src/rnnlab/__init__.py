"""rnnlab: recurrent networks on sequence data with Lightning and Hydra."""

__version__ = "0.1.0"
