"""The cluster model: a simpy simulation of NGINX Plus nodes and the backends behind them."""

from sim._native import choose as _choose

_choose()
