"""Monitoring a simulated cluster as Prometheus would: a scraper on the simulated clock, the
metrics nginx-prometheus-exporter publishes for NGINX Plus, and files a real Prometheus can load
(``scrapes.prom``, ``scrapes.om.txt``). docs/monitoring.md describes them."""

from clustersim.monitoring.scraper import Scraper, attach

__all__ = ["Scraper", "attach"]
