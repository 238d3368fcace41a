"""AWS CDK infrastructure for the fashion pipeline (synthesis-time only; never imported by lambdas/)."""
