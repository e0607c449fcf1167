"""diffrepro: reproduce Natural Inference, the Geometric Perspective and MDM diffusion papers end to end."""

__version__ = "0.1.0"
