"""Data: raw corpora -> records (QC, dedup), lexicons and weak VAD, mixtures, Valence-Flip pairs. Imports core only."""
