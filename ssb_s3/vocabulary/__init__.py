"""The lowest floor: the words every other module speaks, and nothing else.

- imagefiles: the one table of image files (names, ftypes, combined fields, content magic);
- clients: what each simplestreams client accepts (arches, roots, deltas), from their sources;
- text: which outside strings are safe, and the one escape for printing them;
- problems: the typed Problem every check reports;
- layout: every key of a tree (index, catalogs, manifests, version folders, the tool's own), and
  every parse of one.

Pure: no I/O, no store, no config. Imports nothing of ssb_s3 outside this package, so errors,
schemas and config (the floors above) may use it (tests/test_import_graph.py).
"""
