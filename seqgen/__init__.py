"""seqgen: train sequence generators on text and music, sample from them, export to ONNX."""

__version__ = "0.1.0"
