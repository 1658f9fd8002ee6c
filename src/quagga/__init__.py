"""quagga: unsupervised analysis of field recordings and microscope images."""

__version__ = "0.1.0"
