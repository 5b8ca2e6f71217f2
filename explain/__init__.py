"""The torch-free explanation core: everything that turns one request into one explanation.

Items and display titles, the student's input format, evidence and slots, rendering and the
answer checks, the tokenizer wrapper, the user table, the names of a version's artifacts, the
ONNX Runtime session wrapper and decode loop, and the one `Explainer` (`prepare -> generate
-> finish`) that the service, evaluation, parity, the benchmarks and the bulk job all call.
It imports neither torch nor the service, the store or the training code.
"""
