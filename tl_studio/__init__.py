"""TL Studio: transfer learning on images, from a folder of labelled images to a trained model file."""

__version__ = "0.1.0"
