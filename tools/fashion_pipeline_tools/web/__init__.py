"""The browser UI: ``index.html``, one self-contained page (no build step, no external assets).

Served by ``fashion_pipeline_tools.webui``; it calls the inference API with relative URLs
(``./detections``, ``./model``), so any server answering those paths beside it can host it.
"""
