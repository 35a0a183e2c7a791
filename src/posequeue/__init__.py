"""posequeue: distributed, queue-based pose-estimation workers for offline motion analysis.

Nothing heavy is imported here: producers need no model runtime, workers need no video decoder.
"""

__version__ = "0.1.0"
