"""latentspace CLI (placeholder replaced by the full app below)."""
def main():
    raise SystemExit("not yet")
