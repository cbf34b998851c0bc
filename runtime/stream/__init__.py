"""Live fixed cameras: sources, a pipelined loop over the Predictor, a background that follows
the light, objects and events (``maskdepth stream``, ``maskdepth.stream``). No torch here."""

from maskdepth.runtime.stream.config import StreamConfig, StreamResult
from maskdepth.runtime.stream.stream import Stream, stream

__all__ = ["Stream", "StreamConfig", "StreamResult", "stream"]
