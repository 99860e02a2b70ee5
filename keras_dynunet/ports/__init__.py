"""PyTorch checkpoints -> Keras weights, without torch and without arbitrary unpickling."""

from keras_dynunet.ports.torch_checkpoint import UnsafeCheckpointError, read_torch_checkpoint

__all__ = ["UnsafeCheckpointError", "read_torch_checkpoint"]
