"""Prism's online explanation service. Never imports torch or the training code."""
