"""Recorders of labelled footage from open-source games for the scene model (issue 15).

Run from the repository root: ``python -m tools.record_games GAME`` (see ``__main__.py`` and
``models/footage/README.md``).
"""
