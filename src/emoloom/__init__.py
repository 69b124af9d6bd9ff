"""EmoLoom: screen and fine-tune small causal LMs for multi-label emotion + VAD under a one-line JSON contract."""

__version__ = "0.1.0"
