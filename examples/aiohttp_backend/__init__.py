"""aiohttp.web backend that empties tenants' recycle bins through smh-async."""
