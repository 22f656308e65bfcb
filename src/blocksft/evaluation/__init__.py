"""Evaluation: the semi-autoregressive decoder, answer extraction and scoring, generation metrics."""
