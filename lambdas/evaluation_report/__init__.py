"""The evaluation report function package: ``render.render_report`` and ``render.render_comparison``."""
