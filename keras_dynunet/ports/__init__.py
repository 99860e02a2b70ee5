"""PyTorch checkpoints -> Keras weights, without torch and without arbitrary unpickling.

Submodules: :mod:`~keras_dynunet.ports.torchvision` (VGG/ResNet encoders and
``weights="imagenet"`` downloads), :mod:`~keras_dynunet.ports.ternausnet`
(``UNet11``), :mod:`~keras_dynunet.ports.smp` (segmentation_models_pytorch
``Unet``), :mod:`~keras_dynunet.ports.efficientnet_lite`,
:mod:`~keras_dynunet.ports.channels` (RGB kernels for other channel counts)
and :mod:`~keras_dynunet.ports.convert` (the ``convert`` command).
"""

from keras_dynunet.ports.channels import adapt_input_kernel, transfer_weights
from keras_dynunet.ports.torch_checkpoint import UnsafeCheckpointError, read_torch_checkpoint

__all__ = [
    "UnsafeCheckpointError",
    "adapt_input_kernel",
    "read_torch_checkpoint",
    "transfer_weights",
]
