"""Rekognition Custom Labels limits a manifest must keep.

From "Guidelines and quotas" (https://docs.aws.amazon.com/rekognition/latest/customlabels-dg/limits.html)
and "Validation rules for manifest files"
(https://docs.aws.amazon.com/rekognition/latest/customlabels-dg/md-create-manifest-file-validation-rules.html).
"""

from __future__ import annotations

MAX_BOXES_PER_IMAGE = 50
MAX_LINES_PER_MANIFEST = 250_000
MAX_LINE_CHARS = 100_000
MAX_MANIFEST_BYTES = 1_000_000_000
MAX_LABELS_PER_MANIFEST = 250  # "Maximum number of unique labels per manifest is 250."
# The validation rules say "Lower boundary on labels: >=2" for every manifest, but the quotas
# tell the model types apart ("Minimum number of unique labels per Object Location (detection)
# dataset is 1", 2 for classification), ERROR_MANIFEST_TOO_FEW_LABELS defers to them ("The
# minimum depends on if the dataset trains/tests a model to detect image-level labels
# (classification) or if the model detects object locations", tm-debugging-aggregate-errors.html)
# and "Purposing datasets" says why (md-dataset-purpose.html): "To find object locations, your
# datasets needs at least one label. During model training, a further label is automatically
# created that represents the area outside of the bounding boxes". So a detector of a single
# label (every garment mapped to one) is valid.
MIN_LABELS = 1
# Images per object-detection dataset, (train, test), by region (None: every other region):
# "Maximum number of images per Object Location (detection) dataset is 250,000. The limit for
# Asia Pacific (Mumbai) and Europe (London) AWS Regions is 28,000 images" (7,000 for testing),
# https://docs.aws.amazon.com/rekognition/latest/customlabels-dg/limits.html
MAX_IMAGES_BY_REGION: dict[str | None, tuple[int, int]] = {
    None: (250_000, 250_000),
    "ap-south-1": (28_000, 7_000),  # Asia Pacific (Mumbai)
    "eu-west-2": (28_000, 7_000),  # Europe (London)
}
