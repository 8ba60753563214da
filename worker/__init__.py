"""Celery workers of the curvscope service: ``celery -A worker.celery_app worker --pool=solo``.

Thin tasks: load the study's spec from the database, call ``curvscope``, persist state and
progress on the study's row. The science stays in ``curvscope``; the store is ``backend.db`` /
``backend.models`` (no web framework is imported here).
"""
