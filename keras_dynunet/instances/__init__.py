"""Classical (numpy/scipy/scikit-image) instance-segmentation tools for nuclei.

Targets and weight maps for training, watershed post-processing, the Data Science Bowl
2018 score, a synthetic nuclei generator and a small real DSB example. Nothing here
imports Keras.

Examples:
    >>> from keras_dynunet.instances import dsb_score, synthetic_labels
    >>> labels = synthetic_labels((64, 64), n_nuclei=4, radius=(5, 8), seed=0)
    >>> dsb_score(labels, labels).score
    1.0
"""

from keras_dynunet.instances.dsb_data import dsb_example_paths, dsb_split, load_dsb_example
from keras_dynunet.instances.dsb_metric import DEFAULT_THRESHOLDS, DSBScore, dsb_score, iou_matrix
from keras_dynunet.instances.synthetic import synthetic_dataset, synthetic_labels, synthetic_nuclei
from keras_dynunet.instances.targets import (
    BACKGROUND,
    BORDER,
    INTERIOR,
    MAX_LABEL_ID,
    binary_mask,
    instance_borders,
    sigmoid_targets,
    softmax_class_ids,
    softmax_targets,
    validate_labels,
)
from keras_dynunet.instances.watershed import instances_from_predictions, instances_from_softmax
from keras_dynunet.instances.weight_map import (
    class_balance_weights,
    distance_cutoff,
    two_nearest_distances,
    unet_weight_map,
)

__all__ = [
    "BACKGROUND",
    "BORDER",
    "DEFAULT_THRESHOLDS",
    "INTERIOR",
    "MAX_LABEL_ID",
    "DSBScore",
    "binary_mask",
    "class_balance_weights",
    "distance_cutoff",
    "dsb_example_paths",
    "dsb_score",
    "dsb_split",
    "instance_borders",
    "instances_from_predictions",
    "instances_from_softmax",
    "iou_matrix",
    "load_dsb_example",
    "sigmoid_targets",
    "softmax_class_ids",
    "softmax_targets",
    "synthetic_dataset",
    "synthetic_labels",
    "synthetic_nuclei",
    "two_nearest_distances",
    "unet_weight_map",
    "validate_labels",
]
