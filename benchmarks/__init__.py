"""Side-by-side load scenarios: mecha against real peers, measured in one run."""
