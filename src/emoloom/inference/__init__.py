"""Using a trained model: predictions on any text (`EmotionModel`, `emoloom predict`) and a plain Hugging Face export
with its model card (`emoloom export`). No pipeline stage imports this package."""

from emoloom.inference.predictor import EmotionModel, Prediction

__all__ = ["EmotionModel", "Prediction"]
