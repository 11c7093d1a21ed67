"""Evaluation: likelihood, a sketch classifier and the metrics built on it, figures, reports."""
