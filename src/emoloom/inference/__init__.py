"""Using a trained model: predictions on any text (`EmotionModel`, `emoloom predict`) and a plain Hugging Face export
with its model card (`emoloom export`)."""
