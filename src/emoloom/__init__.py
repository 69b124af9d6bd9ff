"""EmoLoom: screen and fine-tune small causal LMs for multi-label emotion + VAD under a one-line JSON contract."""

__version__ = "0.1.0"
__all__ = ["EmotionModel", "Prediction"]


def __getattr__(name: str):
    """`from emoloom import EmotionModel` without importing torch on `import emoloom`."""
    if name in __all__:
        from emoloom.inference import predictor
        return getattr(predictor, name)
    raise AttributeError(f"module 'emoloom' has no attribute {name!r}")
