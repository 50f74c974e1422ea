"""Offline engine tools: ``python -m engines.build`` (a TensorRT plan or an INT8 ONNX graph with its drift report
written into the engine cache), the drift measurement and the INT8 conversion. They import from rtik; rtik never
imports them (the TensorRT backend builds a missing plan itself, through :mod:`rtik.models.backends.trt_plan`)."""
