"""Shelf: retail shelf recognition with a faithful TorchVision ResNet-18.

The data path, one module per stage:
bytes → images (decode) → regions → classify → store → tally → charts / export.
"""

__version__ = "0.1.0"
