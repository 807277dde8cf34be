"""Shared ground of condense: settings, database models, migrations, API models and errors.

The gateway, the workers and the notifier never import each other; they meet here and in
``summarizer``.
"""
