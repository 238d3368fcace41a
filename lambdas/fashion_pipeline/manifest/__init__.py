"""Ground Truth object-detection manifests for Rekognition Custom Labels.

``ManifestAssembler`` (assembler.py) takes records (from a local conversion or from S3
fragments), applies the label catalogue and the per-line rules, and spools finished lines and a
few columns of integers per line to disk (spool.py); ``finish`` finds duplicates, splits the
lines into train and test by groups and enforces the manifest caps, a partition at a time
(partitions.py). Memory stays flat in the number of records: about one byte per record besides
a few fixed-size buffers.

Work comes in two halves. ``ManifestLines.prepare`` (lines.py) does what depends on one record
alone (labels, per-line rules, the line itself) and keeps no state, so worker processes can run
it, and a ``BatchBuilder`` (batches.py) packs prepared records into a ``Batch``;
``ManifestAssembler`` takes batches in input order (``accept``), or records one by one
(``add``). ``manifest_problems`` (checks.py) holds the result against Rekognition's limits
(quotas.py) and ``write_report`` (report.py) writes report.json.
"""

from .assembler import ManifestAssembler
from .batches import COLUMNS, Batch, BatchBuilder, image_hash
from .checks import manifest_problems
from .lines import DEFAULT_ATTRIBUTE, DEFAULT_JOB_NAME, ManifestLines, Prepared, manifest_line
from .quotas import (
    MAX_BOXES_PER_IMAGE,
    MAX_IMAGES_BY_REGION,
    MAX_LABELS_PER_MANIFEST,
    MAX_LINE_CHARS,
    MAX_LINES_PER_MANIFEST,
    MAX_MANIFEST_BYTES,
    MIN_LABELS,
)
from .report import SplitCounts, write_report

__all__ = [
    "COLUMNS",
    "DEFAULT_ATTRIBUTE",
    "DEFAULT_JOB_NAME",
    "MAX_BOXES_PER_IMAGE",
    "MAX_IMAGES_BY_REGION",
    "MAX_LABELS_PER_MANIFEST",
    "MAX_LINES_PER_MANIFEST",
    "MAX_LINE_CHARS",
    "MAX_MANIFEST_BYTES",
    "MIN_LABELS",
    "Batch",
    "BatchBuilder",
    "ManifestAssembler",
    "ManifestLines",
    "Prepared",
    "SplitCounts",
    "image_hash",
    "manifest_line",
    "manifest_problems",
    "write_report",
]
