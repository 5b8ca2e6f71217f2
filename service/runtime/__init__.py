"""The inference runtime: ONNX Runtime sessions, the decode loop and the explanation engine."""
