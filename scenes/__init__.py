"""Built-in procedural scenes."""
def ping(): return "scenes"
