"""The image with each detected garment outlined and captioned: the drawing lives in the core,
``fashion_pipeline.render`` (the batch job draws the same outlines); this module is the
inference function's name for it. Importing it does not import Pillow."""

from fashion_pipeline.render import (  # noqa: F401  (re-exported)
    DARK, FORMATS, LIGHT, MAX_ATTEMPTS, MAX_RENDER_BYTES, PALETTE, RenderError, Rendered, font_size, label_colour, render,
    stroke_width, text_colour,
)
