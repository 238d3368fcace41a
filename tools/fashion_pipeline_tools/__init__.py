"""The laptop side of the fashion pipeline: never bundled into a Lambda function.

The ``fashion-pipeline`` CLI, the HTTPS API client, the web UI server, the demo, the sample
generator and local mode (``local/``: the deployed template run offline on moto and the Custom
Labels emulator). They call the shared runtime core, ``fashion_pipeline``, and boto3.
"""
