"""Compiling SavedModels for Inferentia (inf1) with tensorflow-neuron: ``posequeue compile``.

Nothing here imports TensorFlow at import time; tensorflow-neuron is imported only for the
compile call itself, so every check before it runs on any host with TensorFlow.
"""
