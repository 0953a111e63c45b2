"""Python dependencies as layers: resolve for the image's platform with uv, fetch wheels into the store,
install them with pypa ``installer`` into the image's virtual environment, and check the result.

Nothing here runs the image's Python. See docs/python.md.
"""
