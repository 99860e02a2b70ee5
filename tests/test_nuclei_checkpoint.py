"""The embedded nuclei checkpoint reproduces its zoo card's held-out DSB score."""

import numpy as np

import keras_dynunet as kd
from keras_dynunet.dataset import normalize_image
from keras_dynunet.instances import dsb_split, load_dsb_example
from keras_dynunet.segment import evaluate_instances
from keras_dynunet.zoo import load_card


def test_heldout_dsb_score_matches_the_card():
    card = load_card("nuclei-lite0-dsb2018")
    model = kd.from_pretrained("nuclei-lite0-dsb2018")  # embedded: no network
    assert model.checkpoint_config["class_names"] == ["interior", "border"]
    raw, labels = load_dsb_example()
    _, (image, truth) = dsb_split(normalize_image(raw), labels, holdout=0.25)
    result = evaluate_instances(model, image, truth, model.checkpoint_config["preprocessing"])
    values = {m["name"].split(" on ")[0]: m["value"] for m in card["metrics"]}
    assert result["dsb_score"] >= 0.55
    assert abs(result["dsb_score"] - values["DSB 2018 score"]) < 2e-3
    assert abs(result["f1_at_0.5"] - values["F1 at IoU 0.5"]) < 2e-3
    assert result["true_instances"] == 30
    assert np.unique(result["labels"]).size - 1 == result["predicted_instances"]
