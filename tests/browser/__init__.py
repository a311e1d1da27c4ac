"""Browser tests: headless Chromium drives the CesiumJS viewer against the real server."""
