"""Export: PyTorch -> ONNX fp32 -> fp16 / INT8 -> TensorRT plans, with a parity gate."""
