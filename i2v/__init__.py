"""I2V Studio engine: image + prompt -> video. Importing this package loads no model and touches no GPU."""
__version__ = "0.1.0"
