"""Evaluation: metrics, input conditions, classical baselines, held-out runs and their reports."""
