"""Code shared by every service of the tax agent (shipped in each image under /app/libs)."""
