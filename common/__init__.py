"""What every component shares and that is no part of the data model: the error base, the metrics
registry, the ops HTTP server, the Celery app factory, the webhook URL policy.

It imports nothing from the other condense packages, so any of them may use it.
"""
