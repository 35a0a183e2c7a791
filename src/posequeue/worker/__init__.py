"""What runs on the accelerator host: inference tasks, core-group pinning, model runtimes,
post-processing. Never imports the video decoder."""
