"""Multitask visual listing vectors (paper section 3.1, appendix A.5.1; SPEC section 3).

An ImageNet-pretrained EfficientNet-Lite0 (the EfficientNet-B0 family, without squeeze-excitation) is cut at
global average pooling (1280-d); a ``Linear(1280, dim)`` layer replaces its classifier and *is* the
representation; one linear classification head per task sits on top. Each task is its own "dataset": the
images that carry that label. :class:`BalancedTaskSampler` gives every task an equal share of each batch, each
example carries the id of the task it was drawn for, and :func:`masked_multitask_loss` back-propagates only
that task's head for it. Training has two phases, as in the paper: the heads (backbone frozen), then the last
``unfreeze_blocks`` blocks unfrozen and trained on augmented images (:func:`augment`: rotation, translation,
zoom, contrast).

Made to run on a few CPU cores: the backbone runs over every image **once**, in calls of ``micro_batch``
images (its pooled features, and the activations entering the unfrozen blocks when phase 2 runs, are cached);
phase 1 trains the 256-d layer and the heads on the cached features; phase 2 is short
(``finetune_max_images`` sampled images per epoch) and the final vectors come from running only the
unfrozen tail over the cached activations. Batch-norm statistics and drop-connect stay as pretrained (the
backbone is always in eval mode); the unfrozen layers' weights train.

Cost, measured with ``threads=1`` on a shared 2-core machine: the backbone pass takes ~25 ms an image at
224 px (9,583 fashion images: 4.1 min; 5,000 simulator images: 2.3 min), phase 1 ~20 s, so a default run
is about one backbone pass; ``image_size=128`` makes that pass about 4x faster. Phase 2 is **off by default**
(``finetune_epochs=0``): an epoch of 4,096 augmented images adds ~40 ms an image (~2.7 min) and a tail pass
over the cache, and at that length it did not improve the vectors on fashion (5,000 images: separation AUC
0.954 after phase 1, 0.950 with phase 2 at ``finetune_lr`` 3e-5, 0.946 at 1e-4); the paper fine-tunes for
8 epochs. Memory: the pooled features (5 KB an image) and, with phase 2, the cached activations
(``N x 192 x 7 x 7`` float16, 18 KB an image at 224 px with ``unfreeze_blocks=2``).

Output (one atomic write): the table (``vectors.parquet``: L2-normalised ``dim``-d vectors for every listing
with a readable image, ``table.json``), its quality report (``quality.json``, ``similarity.png``),
``heads.json`` (held-out accuracy per head against the majority-class baseline), ``neighbours.png``
(query images, each followed by its top-5 cosine neighbours) and ``encoder.pt`` (the representation layer,
and the fine-tuned tail if any: :class:`ImageEncoder` embeds new images as the table's vectors, for search
by image).

Letters in shape comments: N images, B batch, T tasks, K classes of one head, V cached views per image,
S image side (``image_size``), C x h x w activations entering the unfrozen blocks, F = 1280 pooled backbone
features, D = ``dim``.
"""

from adsformer.representations.visual.config import Augmentation, VisualConfig
from adsformer.representations.visual.encoder import ImageEncoder
from adsformer.representations.visual.images import ImageLoader, augment
from adsformer.representations.visual.model import Backbone, VisualModel
from adsformer.representations.visual.multitask import (
    BalancedTaskSampler,
    encode_task,
    masked_multitask_loss,
    resolve_tasks,
)
from adsformer.representations.visual.pipeline import represent_visual
from adsformer.representations.visual.train import extract_features

__all__ = [
    "Augmentation",
    "Backbone",
    "BalancedTaskSampler",
    "ImageEncoder",
    "ImageLoader",
    "VisualConfig",
    "VisualModel",
    "augment",
    "encode_task",
    "extract_features",
    "masked_multitask_loss",
    "represent_visual",
    "resolve_tasks",
]
