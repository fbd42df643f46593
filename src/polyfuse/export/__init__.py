"""ONNX export of a saved model, its onnxruntime runner and int8 quantization (``polyfuse[export]``).

onnx / onnxruntime are imported inside the functions that use them, so this package imports
without the extra and says which extra to install when one is used.
"""

from polyfuse.export.model_dir import export_dir
from polyfuse.export.onnx import example_table, export_model, export_onnx, parity
from polyfuse.export.quantize import compare_int8, int8_path, quantize_int8
from polyfuse.export.runtime import OnnxModel
from polyfuse.export.sidecar import read_sidecar, sidecar_path

__all__ = [
    "OnnxModel",
    "compare_int8",
    "example_table",
    "export_dir",
    "export_model",
    "export_onnx",
    "int8_path",
    "parity",
    "quantize_int8",
    "read_sidecar",
    "sidecar_path",
]
