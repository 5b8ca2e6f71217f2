"""The inference runtime: ONNX Runtime sessions, the decode loop, the tokenizer and the user table."""
