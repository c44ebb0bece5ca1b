"""Metric gates on the worker's side: the sources that measure a gate (Prometheus here, CloudWatch
in :mod:`worker.aws.boto_cloudwatch`), each behind :class:`worker.gates.sources.MetricSource`.

The verdict is the pure :func:`worker.domain.gates.evaluate`.
"""
