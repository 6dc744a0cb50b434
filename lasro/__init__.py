"""lasro: fine-tune few-step text-to-image diffusion models toward any reward with LaSRO."""
__version__ = "0.1.0"
