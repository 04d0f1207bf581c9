"""smh-async: empty the recycle bins of many SMH tenant spaces at once."""
from smh_async._version import __version__

__all__ = ["__version__"]
