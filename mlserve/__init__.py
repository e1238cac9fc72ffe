"""mlserve: declarative canary rollouts of ML model versions, driven by Pulumi."""

__version__ = "0.1.0"
