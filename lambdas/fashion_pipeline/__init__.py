"""Domain core of the fashion pipeline: plain Python, no AWS SDK.

Conversion of DeepFashion2 and COCO annotations into Amazon Rekognition Custom Labels
(SageMaker Ground Truth object-detection) manifests. The Lambda functions, the CLI and
the tests all call these modules; AWS access lives in the handlers and the CLI only.
"""

__version__ = "0.1.0"
