"""Chaos campaigns: a nemesis draws random fault schedules (nemesis), each runs with the
replication checker watching (campaign), and the command writes one row per schedule (command)."""
