"""The curvscope service's API side: settings, the SQL store and the FastAPI app.

Layers (imports point downwards only):

* ``backend.core``  settings and problem+json errors: no web framework, no queue, no torch.
* ``backend.db``, ``backend.models``, ``backend.crud``  the SQL store (SQLAlchemy 2): the
  source of truth for studies, their state and their retraining chunks. The worker uses these
  three modules to write progress; they import neither FastAPI nor Celery.
* ``backend.api`` and ``backend.app``  the FastAPI application; it enqueues work by task name
  (``backend.queue``) and never imports ``worker``.
"""
