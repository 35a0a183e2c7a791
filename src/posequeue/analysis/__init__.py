"""Motion analysis over a job's poses: people tracked through the video, filters, angles, outputs."""
