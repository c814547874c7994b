"""``python -m fakesvc.service NAME [--graph G]``: one service of a graph alone, with its own batcher."""

from fakesvc.serving.runner import main

main("service")
