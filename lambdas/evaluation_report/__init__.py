"""The evaluation report: ``build.build_report`` (shared with the CLI's ``report``), its pages
(``render``), and the report function every training run invokes (``handler``, its payload in ``events``)."""
