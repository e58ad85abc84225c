"""ULM: user lifecycle management for social e-commerce."""
__version__ = "0.1.0"
