"""Evaluation: cross-modal matching, temporal retrieval, activity recognition."""
