"""report.html: the page a user opens after a run (``page``), its tables of API objects
(``tables``), and the ``clustersim report DIR [DIR2 ...]`` command that rebuilds or compares."""

from clustersim.reporting.page import build_html, cmd_report, register, write_report

__all__ = ["build_html", "cmd_report", "register", "write_report"]
