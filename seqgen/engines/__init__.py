"""Step engines: run a model one call at a time, state carried, logits out as numpy.

- ``base``: ``Generator`` (an engine plus its tokenizer and what the model was trained for).
- ``torch_engine``: a checkpoint's model in PyTorch.
- ``onnx_engine``: an exported bundle in onnxruntime and numpy alone (never torch or music21).
- ``load``: ``open_generator``, for any RUN argument.
This package's ``__init__`` imports nothing, so importing the onnxruntime engine loads no torch.
"""
