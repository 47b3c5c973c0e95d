"""Evaluation tasks that take any Encoder, grading, and reports."""
