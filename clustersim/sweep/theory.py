"""Queueing theory the simulator is checked against: the M/M/c queue and Erlang's C formula.

For Poisson arrivals at rate ``lam``, exponential service at rate ``mu`` per server and ``c``
servers, the offered load is ``a = lam / mu`` erlangs and the utilisation ``rho = a / c``. The
probability that an arrival waits is Erlang C, and the mean wait in the queue is
``Wq = C / (c * mu - lam)``.
"""

from __future__ import annotations


def erlang_c(c: int, a: float) -> float:
    """Probability of waiting in an M/M/c queue with offered load ``a`` erlangs (``a < c``)."""
    if not 0 <= a < c:
        raise ValueError("an M/M/c queue is stable only for offered load below c")
    # Erlang B by its recurrence (stable for large c), then C from B
    b = 1.0
    for k in range(1, c + 1):
        b = a * b / (k + a * b)
    rho = a / c
    return b / (1 - rho + rho * b)


def mmc(lam: float, mu: float, c: int) -> dict:
    """Utilisation, probability of waiting, mean queue wait and mean response time of M/M/c."""
    a = lam / mu
    p_wait = erlang_c(c, a)
    wq = p_wait / (c * mu - lam)
    return {"utilization": a / c, "p_wait": p_wait, "wq": wq, "w": wq + 1 / mu}


