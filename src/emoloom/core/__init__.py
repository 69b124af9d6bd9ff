"""Core: the label space, the JSON contract, params, raw resources, text helpers, atomic I/O, provenance. Imports nothing else of emoloom."""
