"""Post-processing and media helpers built on PyAV and the ffmpeg binary that imageio-ffmpeg ships."""
