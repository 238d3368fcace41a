"""Inference API (``inference.handler``) and idle auto-stop (``inference.autostop``) functions."""
