"""diffsvc: singing voice conversion with Diff-SVC, rebuilt to load the original checkpoints."""

__version__ = "0.1.0"
