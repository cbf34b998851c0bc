"""maskdepth: mask and dense depth of what is new in a fixed camera's scene, from one network."""

__version__ = "0.1.0"
