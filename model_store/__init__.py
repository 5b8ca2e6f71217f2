"""Prism's model store: the user-aware BART, its input format, versioned storage and ONNX export.

Only `modeling` and `export` import torch; everything the service reads (the store, the
manifest, the input format, the tokenizer) does not.
"""
