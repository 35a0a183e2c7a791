"""On PYTHONPATH (with tests/ after it), makes ``import tensorflow.neuron`` give tests/tfn_standin.py
in a subprocess; TensorFlow itself is still the real one."""

import sys

import tfn_standin

sys.modules["tensorflow.neuron"] = tfn_standin
