"""Bulk work: explaining a whole request log offline (`prism-batch explain`), on Ray Data.

It depends on `service` (the request schema and the model loader, so every row is checked and
explained exactly as the service would), `explain` and `model_store`; never on torch or the
training code.
"""
