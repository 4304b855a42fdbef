"""Renderers of the report's data (tests/harness/report.py collect()): each reads, none builds.

layout.py places cells in the grid and names their marks; terminal.py, markdown.py
and html.py render the same grid, with the same marks, for their readers.
"""
