"""Reporting: the comparison tables and the figures, from metrics files. Imports core only."""
