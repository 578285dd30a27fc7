"""ONNX export: a prefill graph and a decode-step graph with explicit cache tensors."""
