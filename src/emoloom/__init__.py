"""EmoLoom: screen and fine-tune small causal LMs for multi-label emotion + VAD under a one-line JSON contract.

The package root imports nothing: every DVC stage loads this file, so anything imported here would become a
dependency of every stage. The user-facing API is `from emoloom.inference import EmotionModel`."""

__version__ = "0.1.0"
