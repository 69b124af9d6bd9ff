"""Modeling: backbones, the LM + heads model, batching, token-level lexicon tables, losses, the appraisal verifier. Imports core and data."""
