"""The thumbnailer: the renditions the web client shows (256 px thumbnail, 1280 px preview)
and a ThumbHash placeholder, made from one decode of each photo."""
