"""brstnet: predict spatial gene expression from H&E images of breast cancer."""

__version__ = "0.1.0"
