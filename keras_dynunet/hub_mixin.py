"""``model.save_pretrained(...)`` and ``model.push_to_hub(...)`` as model methods."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


class HubMixin:
    """Adds checkpoint and Hub methods to this library's model classes.

    They forward to :func:`keras_dynunet.save_pretrained` and
    :func:`keras_dynunet.push_to_hub`.
    """

    def save_pretrained(self, directory: str | os.PathLike[str], **kwargs: Any) -> Path:
        """Write a checkpoint directory (see :func:`keras_dynunet.save_pretrained`).

        >>> import tempfile, keras_dynunet as kd
        >>> m = kd.VanillaUNet(input_shape=(None, None, 1), padding="same", base_filters=2, depth=2)
        >>> sorted(p.name for p in m.save_pretrained(tempfile.mkdtemp() + "/c").iterdir())
        ['README.md', 'config.json', 'model.weights.h5']
        """
        from keras_dynunet.checkpoint import save_pretrained

        return save_pretrained(self, directory, **kwargs)

    def push_to_hub(self, repo_id: str, **kwargs: Any) -> str:
        """Publish to the Hugging Face Hub (see :func:`keras_dynunet.push_to_hub`)."""
        from keras_dynunet.hub import push_to_hub

        return push_to_hub(self, repo_id, **kwargs)
