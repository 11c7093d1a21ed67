"""Neural network parts of AI-Sketcher and its Sketch-RNN baselines."""
