"""Whole-slide prediction: gene-expression maps for H&E slides without ST data."""
