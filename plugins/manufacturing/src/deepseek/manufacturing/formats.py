"""File types, stream addresses and training's image scales the plugin knows: constants only,
imported by the plugin's hooks, its command line and the readers alike (no other imports)."""

from __future__ import annotations

#: part images and frame folders
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".pgm", ".ppm", ".pnm",
                  ".webp", ".jp2"}
#: video files (read through OpenCV's FFmpeg backend)
VIDEO_SUFFIXES = [".mp4", ".avi", ".mkv", ".mov", ".m4v", ".webm", ".mpg", ".mpeg", ".wmv",
                  ".flv", ".ts", ".mjpg", ".mjpeg", ".h264", ".h265", ".y4m"]
#: network streams
STREAM_SCHEMES = ["rtsp://", "rtsps://", "http://", "https://", "rtmp://", "udp://", "tcp://"]
#: the image scales a supervised model may be trained at (``train --folder --scale``): below
#: 1 the network's 16-pixel cells see more of the part, above 1 a thin defect spans more of
#: a cell
SCALE_RANGE = (0.25, 2.0)
#: the bit depths a 16-bit image's pixels may be read over (``train --bit-depth``, with
#: ``--folder`` or ``--good-only``): an 8- to 14-bit camera's data in 16-bit words
BIT_DEPTHS = (8, 16)
#: the views a network can score a photo under (``train --folder --views``): the photo as
#: it is, or with its three flips
VIEWS = (1, 4)

#: the reader (of kind ``encoded``) the photo decisions declare for their ``image``: a
#: server decodes a photo file sent as BYTES with it (:func:`images.decode_photo`)
PHOTO_READER = "part-photo"
